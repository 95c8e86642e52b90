"""Run directories: where a run keeps its logs and state, the host lock, and the
clean-up of what a run killed outright left behind.

Invariants: one run per host at a time (HOST_LOCK); a run directory with a
runner.pid is a run going (or killed); only the newest _RUNS_KEPT finished
ones are kept.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import TextIO

from devcluster.conformance.base import REPO, RunError, say
from devcluster.conformance.processes import kill_processes_naming, stop_nginx
from devcluster.podnet import remove_leftovers

# Held for the whole run: the Gateways' loopback addresses (derived from their
# names) and the pod subnet are the same for every run on a host.
HOST_LOCK = Path("/run/agc-conformance.lock")

# run directories (logs and state) are kept for the last this many runs
_RUNS_KEPT = 10


def runs_root() -> Path:
    return Path(os.environ.get("AGC_CACHE_DIR") or REPO / ".cache") / "conformance" / "runs"


def default_run_dir() -> Path:
    return runs_root() / datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def prune_old_runs(runs: Path, current: Path) -> None:
    """Delete all but the newest _RUNS_KEPT run directories (named by start time)."""
    if not runs.is_dir():
        return
    finished = sorted(
        d for d in runs.iterdir() if d.is_dir() and d != current and not (d / "runner.pid").exists()
    )
    for old in finished[: max(0, len(finished) - (_RUNS_KEPT - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def lock_host() -> TextIO:
    """Take HOST_LOCK; it goes with the process, however that ends. Keep the
    returned file open."""
    lock = HOST_LOCK.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RunError(
            "another conformance run is going on this host (it holds "
            f"{lock.name}); wait for it or stop it"
        ) from None
    return lock


def remove_leftovers_of_killed_runs(runs: Path) -> None:
    """Remove what a run killed outright (SIGKILL) left: processes still running
    from its directory (its children get SIGTERM when it dies, but kube-apiserver
    can hang in its graceful shutdown once etcd is gone), its etcd data on tmpfs,
    its pod network, its NGINX masters and data plane directory. Called with the
    host lock held, so no other run is going."""
    for pid_file in sorted(runs.glob("*/runner.pid")):
        run = pid_file.parent
        etcd_dir = run / "etcd-dir"
        markers = [f"{run}/control-plane/".encode(), f"{run}/node-agent".encode()]
        with contextlib.suppress(OSError):
            markers.append(etcd_dir.read_bytes())
        kill_processes_naming(markers)
        with contextlib.suppress(OSError):
            shutil.rmtree(etcd_dir.read_text(), ignore_errors=True)
        network = run / "node-agent" / "network.json"
        with contextlib.suppress(OSError, ValueError):
            tag = json.loads(network.read_text()).get("tag")
            # the clean-up a node agent runs over what a crashed one left (private to
            # podnet: there is no public entry point for it yet)
            if isinstance(tag, str) and tag.isalnum() and (removed := remove_leftovers(tag)):
                say(f"removed the pod network a killed run left: {', '.join(removed)}")
        with contextlib.suppress(OSError):
            dataplane = Path((run / "dataplane-dir").read_text())
            if any(dataplane.glob("*/nginx.pid")):
                say(f"stopping NGINX that a killed run left serving from {dataplane}")
                stop_nginx(dataplane)
            keep_dataplane(dataplane, run)
        pid_file.unlink(missing_ok=True)


def keep_dataplane(dataplane: Path, run_dir: Path) -> None:
    """Move what the data planes left (configs, error logs) into the run directory."""
    shutil.copytree(dataplane, run_dir / "dataplane", symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(dataplane, ignore_errors=True)
