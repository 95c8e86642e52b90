"""What the benchmarks that run through the API server share: a control plane on
tmpfs built from the cached test environment, and a process's RSS."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
