"""Process supervision for a conformance run: the children it starts (and stops by
pid), the suite's test binary, the build scripts, NGINX left behind by design,
the processes of a run killed outright, and a teardown a second Ctrl-C cannot
interrupt.

Invariants: a child is stopped by its pid, SIGTERM first; NGINX only through
pid files whose master names its prefix; a leftover only when its command
line names a path of the killed run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from devcluster.conformance.base import REPO, Interrupted, RunError, say
from devcluster.conformance.suiteoutput import SuiteResults
from devcluster.controlplane import die_with_parent, spawn_logged, tail
from devcluster.spawn import python_env

# `-test.v=test2json` marks the lines the testing package writes itself (=== RUN,
# --- PASS, ...) with this byte, and prints each result as the test ends; plain -v
# holds subtest results back until the parent test ends.
_TEST2JSON_MARK = "\x16"


@attrs.define
class Child:
    """A process started by the runner, its output in `log`."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: list[str], log: Path) -> Child:
        # devcluster's modules among them find it through PYTHONPATH (devcluster.spawn)
        return cls(name=name, process=spawn_logged(argv, log, env=python_env()), log=log)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RunError(
                f"{self.name} exited with code {self.process.returncode}; "
                f"its log ({self.log}) ends with:\n{tail(self.log, lines=40)}"
            )

    def stop(self, *, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop within {grace:.0f}s of SIGTERM; killing it")
            self.process.kill()
            self.process.wait()


def stop_nginx(dataplane: Path) -> None:
    """Stop the NGINX masters the controller left under `dataplane` (by design they
    outlive it). Only masters whose command line names their prefix there."""
    for pid_file in sorted(dataplane.glob("*/nginx.pid")):
        try:
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"nginx" not in cmdline or str(pid_file.parent).encode() not in cmdline:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 5.0
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def build(script: str) -> Path:
    """Run a build script (progress on our stderr); it prints its output directory last."""
    result = subprocess.run(
        [str(REPO / "hack" / script)], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise RunError(f"hack/{script} failed (its output above says why)")
    return Path(result.stdout.strip().splitlines()[-1])


def run_suite(argv: list[str], env: dict[str, str], log: Path) -> tuple[int, SuiteResults]:
    """Run the test binary, keep its whole output in `log`, print one line per test."""
    results = SuiteResults()
    with log.open("w") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - one prctl(2) call, lock-free
        )
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip("\n").replace(_TEST2JSON_MARK, "")
                out.write(line + "\n")
                if message := results.feed(line, time.monotonic()):
                    say(message)
            return process.wait(), results
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# the programs a run starts (NGINX aside: see stop_nginx); Python ones by module
_RUN_PROGRAMS = (b"etcd", b"kube-apiserver", b"kube-controller-manager", b"conformance.test")
_RUN_MODULES = (b"devcluster.nodeagent", b"agc_controller.cli")


def kill_processes_naming(markers: list[bytes]) -> None:
    """SIGKILL every process of a run's programs whose arguments contain one of
    `markers` (paths that only the processes of that run name)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            ours = os.path.basename(argv[0]) in _RUN_PROGRAMS or (
                len(argv) > 2 and argv[1] == b"-m" and argv[2] in _RUN_MODULES
            )
            if ours and any(marker and marker in arg for arg in argv for marker in markers):
                say(f"stopping pid {proc.name}, left by a killed run: {b' '.join(argv)[:120]!r}")
                os.kill(int(proc.name), signal.SIGKILL)


@contextlib.contextmanager
def teardown_uninterrupted() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while tearing down: a second Ctrl-C must not leave
    processes and namespaces behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
