"""What the benchmarks share: a control plane on tmpfs built from the cached test
environment, applying objects, a process's RSS, and wrk runs read into numbers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
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


def wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    host: str,
    cpus: set[int] | None = None,
    hosts_file: Path | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """One wrk run (2 threads, keep-alive, never retries; on `cpus` if given; with
    more request `headers`): req/s, p50, p99 and max latency in ms, and failed =
    socket errors + non-2xx answers.

    `hosts_file` replaces /etc/hosts for wrk alone (a private mount namespace), so
    that an https URL can name the host its TLS SNI must carry."""
    args = ["-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {host}"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    argv = ["wrk", *args, url]
    if hosts_file is not None:
        mount = 'mount --bind "$0" /etc/hosts && exec "$@"'
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            mount,
            str(hosts_file),
            *argv,
        ]
    out = subprocess.run(
        argv,
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=None if cpus is None else functools.partial(os.sched_setaffinity, 0, cpus),
    ).stdout

    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    top = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not (p50 and p99 and top and rps):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "p50": ms(*p50.groups()),
        "p99": ms(*p99.groups()),
        "max": ms(*top.groups()),
        "failed": (sum(map(int, errors.groups())) if errors else 0)
        + (int(non2xx.group(1)) if non2xx else 0),
    }
