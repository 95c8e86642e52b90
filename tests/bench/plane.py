"""What the benchmarks that run through the API server share: a control plane on
tmpfs built from the cached test environment, applying objects, a process's RSS."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from agc_controller.kube import server_side_apply
from devcluster import ControlPlane, ControlPlaneBinaries

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def control_plane(prefix: str) -> Iterator[tuple[ControlPlane, Path]]:
    """A started control plane (etcd on tmpfs) and a work directory, both gone after."""
    testenv = Path(
        subprocess.run(
            [str(REPO / "hack" / "testenv.sh")], check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    shm = Path("/dev/shm")
    etcd_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-etcd-", dir=shm if shm.exists() else None))
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    workdir.chmod(0o711)  # NGINX workers (nobody) reach files under it
    plane = ControlPlane(
        binaries=ControlPlaneBinaries.from_testenv(testenv), workdir=workdir, etcd_data_dir=etcd_dir
    )
    plane.start()
    try:
        yield plane, workdir
    finally:
        plane.stop()
        shutil.rmtree(etcd_dir, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def create_all(api: client.ApiClient, objects: list[tuple[str, dict[str, Any]]]) -> float:
    """Apply every object, 32 in flight; the time the last answer came."""
    gate = asyncio.Semaphore(32)
    last = 0.0

    async def one(plural: str, obj: dict[str, Any]) -> None:
        nonlocal last
        async with gate:
            await server_side_apply(api, obj, plural=plural)
            last = time.perf_counter()

    await asyncio.gather(*(one(p, o) for p, o in objects))
    return last
