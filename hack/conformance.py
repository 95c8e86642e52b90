#!/usr/bin/env python3
"""Run the official Gateway API conformance suite against agc-controller on this host.

    .venv/bin/python hack/conformance.py            (as root; `make conformance` does it)

What runs, all on loopback and local network namespaces:
  1. a control plane (etcd on tmpfs, kube-apiserver, kube-controller-manager)
     with the experimental-channel Gateway API CRDs (README.md says why);
  2. the node agent (devcluster.nodeagent), which binds the
     suite's pods and runs their containers as local processes, one network
     namespace and pod IP each: the echo-basic image runs the echo-basic binary
     and the coredns image the coredns binary that hack/conformance-build.sh built;
  3. the controller (`agc-controller run`, local NGINX provider) and a
     GatewayClass for it;
  4. the suite's test binary, told the GatewayClass and the profiles; it infers
     the supported features from the GatewayClass status.

The outcome is judged against conformance/known-failures.txt: the run passes
only when the failing tests are exactly the listed ones. Everything the run
produced (suite output, controller, node agent and control plane logs, NGINX
configs, a state dump per failed test) stays in the run directory it prints.

Invariants:
- Every process started here is stopped here, by pid, newest first, on any
  exit including Ctrl-C and SIGTERM; a second signal during teardown is ignored
  so teardown completes. Children also get SIGTERM if this process dies
  (PR_SET_PDEATHSIG); NGINX, which outlives the controller by design, is
  stopped through the pid files in the run's data plane directory.
- One run per host at a time (HOST_LOCK); a run starts by removing what a run
  killed outright left (found through the runner.pid files of run directories).
- The committed report (conformance/reports/) is replaced only by a full run
  that completed; a focused or failed-to-start run leaves it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import attrs
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

# devcluster is not installed: it is found at the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agc_controller import __version__
from agc_controller.kube import api_client_from_kubeconfig, server_side_apply
from agc_controller.translate.settings import DEFAULT_CONTROLLER_NAME
from devcluster import ControlPlane, ControlPlaneBinaries, install_gateway_api_crds
from devcluster.controlplane import (
    ControlPlaneError,
    die_with_parent,
    free_port,
    spawn_logged,
    tail,
)
from devcluster.podnet import remove_leftovers
from devcluster.spawn import python_env

REPO = Path(__file__).resolve().parent.parent
GATEWAY_API_VERSION = (REPO / "hack" / "gateway-api-version").read_text().strip()
KNOWN_FAILURES = REPO / "conformance" / "known-failures.txt"
REPORT = REPO / "conformance" / "reports" / GATEWAY_API_VERSION / "agc-controller-report.yaml"

GATEWAY_CLASS = "agc-controller"
PROFILES = ("GATEWAY-HTTP", "GATEWAY-GRPC")
# the images the suite's manifests run, by repository (tags vary between manifests)
ECHO_IMAGE = "registry.k8s.io/gateway-api/echo-basic"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns"
IMPLEMENTATION = {
    "organization": "agc-controller",
    "project": "agc-controller",
    "url": "https://github.com/agc-controller/agc-controller",
    "contact": "https://github.com/agc-controller/agc-controller/issues",
}
GW = "gateway.networking.k8s.io"
# For GatewayStaticAddresses: the local provider binds a requested address when it is
# loopback and free (this one is outside its pool, 127.77.0.0/16, so no other Gateway
# holds it) and refuses any other with AddressNotUsable, sending it nothing.
USABLE_ADDRESS = "127.78.0.1"
UNUSABLE_ADDRESS = "192.0.2.10"  # TEST-NET-1 (RFC 5737)
# Held for the whole run: the Gateways' loopback addresses (derived from their
# names) and the pod subnet are the same for every run on a host.
HOST_LOCK = Path("/run/agc-conformance.lock")
# what main() undoes on exit, in reverse order: (what, how)
Teardown = list[tuple[str, Callable[[], None]]]

# measured on 2 cores: node registered ~2 s, controller ready ~3 s, GatewayClass ~1 s
_START_TIMEOUT = 90.0
_CONTROLLER_GRACE = 10.0  # --shutdown-grace given to the controller
_AGENT_STOP_TIMEOUT = 90.0  # the agent stops every pod (3 s grace each, in parallel)

# `-test.v=test2json` marks the lines the testing package writes itself (=== RUN,
# --- PASS, ...) with this byte, and prints each result as the test ends; plain -v
# holds subtest results back until the parent test ends.
_TEST2JSON_MARK = "\x16"
# result lines of the suite's tests (TestConformance/<ShortName>), not of their
# subtests (one more path element)
_RESULT = re.compile(r"^--- (PASS|FAIL|SKIP): TestConformance/([^/\s]+) \((\d+(?:\.\d+)?)s\)$")
# a top-level test starting, or resuming after a pause (parallel tests)
_STARTED = re.compile(r"^=== (?:RUN|CONT)\s+TestConformance/([^/\s]+)$")
_CASE_FAILED = re.compile(r"^--- FAIL: TestConformance/([^/\s]+)/(\S+) \(")
# any header naming a test (or one of its subtests) as the owner of the lines below
_ANY_HEADER = re.compile(r"^=== (?:RUN|CONT|NAME|PAUSE)\s+TestConformance/([^/\s]+)")
_EXPLICITLY_SKIPPED = re.compile(r"Skipping (\S+): test explicitly skipped")
_NOT_SUPPORTED = re.compile(r"Skipping (\S+): suite does not support (\S+)")
_SUITE_RESULT = re.compile(r"^--- (PASS|FAIL): TestConformance \((\d+(?:\.\d+)?)s\)$")


def say(message: str) -> None:
    print(f"[conformance] {message}", file=sys.stderr, flush=True)


class RunError(Exception):
    """The run could not get to a verdict; the message says what to do next."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM: tear down and exit 130."""


# -- processes ---------------------------------------------------------------------------


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


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


# -- building ------------------------------------------------------------------------------


def build(script: str) -> Path:
    """Run a build script (progress on our stderr); it prints its output directory last."""
    result = subprocess.run(
        [str(REPO / "hack" / script)], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise RunError(f"hack/{script} failed (its output above says why)")
    return Path(result.stdout.strip().splitlines()[-1])


# -- cluster steps (kubernetes-asyncio, one short event loop each) -------------------------


async def _install_crds(plane: ControlPlane, channel: str) -> int:
    async with await api_client_from_kubeconfig(plane.kubeconfig) as api:
        return len(await install_gateway_api_crds(api, plane.binaries.crds, channel=channel))


async def _wait_node_ready(kubeconfig: Path, node: str, agent: Child) -> None:
    async with await api_client_from_kubeconfig(kubeconfig) as api:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            agent.check_alive()
            with contextlib.suppress(ApiException):
                status = (await core.read_node(node)).status
                if any(c.type == "Ready" and c.status == "True" for c in status.conditions or []):
                    return
            await asyncio.sleep(0.5)
    raise RunError(
        f"node {node} was not Ready within {_START_TIMEOUT:.0f}s; the node agent's log "
        f"({agent.log}) ends with:\n{tail(agent.log, lines=40)}"
    )


async def _apply_gateway_class(kubeconfig: Path, controller: Child) -> list[str]:
    """Apply our GatewayClass; return its status.supportedFeatures once Accepted."""
    gateway_class = {
        "apiVersion": f"{GW}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {
            "controllerName": DEFAULT_CONTROLLER_NAME,
            "description": "agc-controller with the local NGINX data plane (conformance run)",
        },
    }
    async with await api_client_from_kubeconfig(kubeconfig) as api:
        await server_side_apply(api, gateway_class, plural="gatewayclasses")
        custom = client.CustomObjectsApi(api)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            controller.check_alive()
            status = (
                await custom.get_cluster_custom_object(GW, "v1", "gatewayclasses", GATEWAY_CLASS)
            ).get("status") or {}
            accepted = any(
                c["type"] == "Accepted" and c["status"] == "True"
                for c in status.get("conditions") or []
            )
            features = [str(f["name"]) for f in status.get("supportedFeatures") or []]
            if accepted and features:
                return sorted(features)
            await asyncio.sleep(0.2)
    raise RunError(
        f"GatewayClass {GATEWAY_CLASS} was not Accepted with supportedFeatures within "
        f"{_START_TIMEOUT:.0f}s; the controller's log ({controller.log}) ends with:\n"
        f"{tail(controller.log, lines=40)}"
    )


def _wait_http_ok(url: str, child: Child, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        child.check_alive()
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RunError(
        f"{what} did not answer {url} within {_START_TIMEOUT:.0f}s; its log ({child.log}) "
        f"ends with:\n{tail(child.log, lines=40)}"
    )


# -- results -------------------------------------------------------------------------------


@attrs.define
class SuiteResults:
    """What the suite's `go test -v` output says, test by test.

    Durations are wall time from the test's start (or its resumption, for a test
    that paused to run in parallel) to its result line: the suite's tests run
    their cases as parallel subtests, and `go test` reports a parent's duration
    without the time it waits for them.
    """

    # test short name -> (PASS|FAIL|SKIP, seconds), in completion order
    outcomes: dict[str, tuple[str, float]] = attrs.field(factory=dict)
    # tests skipped because the GatewayClass does not claim a feature they need -> feature
    not_supported: dict[str, str] = attrs.field(factory=dict)
    # tests skipped by -run-test or -skip-tests
    explicitly_skipped: set[str] = attrs.field(factory=set)
    # failed test -> its failed subtests (path below the test), in order
    failed_cases: dict[str, list[str]] = attrs.field(factory=dict)
    # the TestConformance line (PASS|FAIL), absent if the binary died first
    suite_outcome: str | None = None
    # lines that say the binary died: a panic, the -test.timeout alarm
    fatal: list[str] = attrs.field(factory=list)
    # test short name -> when it started or resumed (the caller's clock)
    _started: dict[str, float] = attrs.field(factory=dict)

    def feed(self, line: str, now: float) -> str | None:
        """Take one output line seen at `now`; return a progress message for it, if any."""
        if m := _RESULT.match(line):
            outcome, name = m.group(1), m.group(2)
            seconds = max(float(m.group(3)), now - self._started.get(name, now))
            self.outcomes[name] = (outcome, seconds)
            quiet = name in self.not_supported or name in self.explicitly_skipped
            if outcome == "SKIP" and quiet:
                return None
            return f"{outcome:4} {name} ({seconds:.1f}s)"
        if m := _STARTED.match(line):
            self._started[m.group(1)] = now
        elif m := _CASE_FAILED.match(line):
            self.failed_cases.setdefault(m.group(1), []).append(m.group(2))
        elif m := _NOT_SUPPORTED.search(line):
            self.not_supported[m.group(1)] = m.group(2)
        elif m := _EXPLICITLY_SKIPPED.search(line):
            self.explicitly_skipped.add(m.group(1))
        elif m := _SUITE_RESULT.match(line):
            self.suite_outcome = m.group(1)
        elif line.startswith(("panic:", "fatal error:")):
            self.fatal.append(line)
        return None

    def named(self, outcome: str) -> list[str]:
        return sorted(n for n, (o, _) in self.outcomes.items() if o == outcome)

    @property
    def skipped(self) -> list[str]:
        """Skipped for another reason than an unclaimed feature or -run-test."""
        return [
            n
            for n in self.named("SKIP")
            if n not in self.not_supported and n not in self.explicitly_skipped
        ]


def output_by_test(log: Path) -> dict[str, list[str]]:
    """The suite's output split by test: `go test` names the test before output that
    belongs to another one than the previous line's (=== RUN/CONT/NAME/PAUSE)."""
    by_test: dict[str, list[str]] = {}
    current: str | None = None
    with log.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("=== "):
                m = _ANY_HEADER.match(line)
                current = m.group(1) if m else None
            if current is not None:
                by_test.setdefault(current, []).append(line)
    return by_test


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


def read_known_failures(path: Path) -> dict[str, str]:
    """`TestName  # cause` per line; blank lines and lines starting with # are ignored."""
    known: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, cause = line.partition("#")
        name, cause = name.strip(), cause.strip()
        if not re.fullmatch(r"[A-Za-z0-9]+", name) or not cause:
            raise RunError(
                f"{path}:{number}: expected `TestName  # cause`, got {line!r}: every known "
                "failure names one test and says why it fails"
            )
        known[name] = cause
    return known


def summarize(
    results: SuiteResults,
    report: dict[str, Any] | None,
    known: dict[str, str],
    *,
    focused: bool,
    out: TextIO,
) -> bool:
    """Print the verdict; True when it passes (failures == known failures)."""

    def write(text: str) -> None:
        print(text, file=out)

    write("")
    write(f"Gateway API {GATEWAY_API_VERSION} conformance, agc-controller {__version__}")
    in_profiles: set[str] = set()
    for profile in sorted((report or {}).get("profiles") or [], key=lambda p: p["name"]):
        write(f"  {profile['name']}:")
        for level in ("core", "extended"):
            status = profile.get(level)
            if not status:
                continue
            stats = status.get("statistics") or {}
            write(
                f"    {level:8} {status.get('result', '?'):8} passed {stats.get('Passed', 0):3}"
                f"  failed {stats.get('Failed', 0):3}  skipped {stats.get('Skipped', 0):3}"
            )
            for key, label in (("failedTests", "failed: "), ("skippedTests", "skipped:")):
                for name in status.get(key) or []:
                    in_profiles.add(name)
                    write(f"      {label} {name}")
            if unclaimed := status.get("unsupportedFeatures"):
                write(f"      not claimed (their tests did not run): {', '.join(unclaimed)}")
    failed, passed = results.named("FAIL"), results.named("PASS")
    write(
        f"  all tests run: {len(passed)} passed, {len(failed)} failed, "
        f"{len(results.skipped)} skipped; {len(results.not_supported)} not run "
        "(they need a feature the GatewayClass does not claim)"
    )
    slowest = sorted(results.outcomes.items(), key=lambda item: -item[1][1])[:10]
    write("  slowest: " + ", ".join(f"{name} {s:.1f}s" for name, (_, s) in slowest))
    if not focused:
        for name in results.skipped:
            write(f"  SKIPPED {name}")

    ok = not results.fatal and results.suite_outcome is not None
    if not ok:
        write("  The suite did not complete: " + ("; ".join(results.fatal) or "no verdict line"))
    listed = KNOWN_FAILURES.relative_to(REPO)
    for name in failed:
        if name in known:
            verdict = f"known: {known[name]}"
        elif focused:
            verdict = "not in the known failures"
        else:
            ok = False
            verdict = f"NEW: not in {listed}"
        profiles = "" if name in in_profiles or report is None else " (in no profile run)"
        write(f"  FAILED {name}{profiles}  {verdict}")
        for case in results.failed_cases.get(name, [])[:4]:
            write(f"      {case.replace('_', ' ')}")
    if focused:
        # the rest of the suite was skipped on purpose; only the focused test counts
        return ok and not failed
    for name in sorted(set(known) - set(failed)):
        ok = False
        if name in passed:
            write(f"  PASSED {name}, which {listed} lists as failing: remove it from the list")
        else:
            outcome = "was not run" if name not in results.outcomes else "was skipped"
            write(
                f"  {name} (listed in {listed}) {outcome}: remove it from the list or find "
                "out why it no longer runs"
            )
    return ok


# -- the run -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hack/conformance.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="where logs and state go (default: $AGC_CACHE_DIR/conformance/runs/<time>)",
    )
    parser.add_argument(
        "--channel",
        choices=("standard", "experimental"),
        default="experimental",
        help="Gateway API CRD channel (default: %(default)s; conformance/README.md says why)",
    )
    parser.add_argument(
        "--run-test",
        metavar="NAME",
        help="run one test (e.g. HTTPRouteSimpleSameNamespace); no report, no known-failures "
        "verdict",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="after the suite, keep everything running, with the suite's objects, until Ctrl-C",
    )
    parser.add_argument(
        "--test-timeout", default="60m", help="go test -test.timeout (default: %(default)s)"
    )
    parser.add_argument(
        "suite_args", nargs="*", metavar="-- SUITE-FLAG", help="extra flags for the suite"
    )
    return parser


# run directories (logs and state) are kept for the last this many runs
_RUNS_KEPT = 10


def _runs_root() -> Path:
    return Path(os.environ.get("AGC_CACHE_DIR") or REPO / ".cache") / "conformance" / "runs"


def _default_run_dir() -> Path:
    return _runs_root() / datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _prune_old_runs(runs: Path, current: Path) -> None:
    """Delete all but the newest _RUNS_KEPT run directories (named by start time)."""
    if not runs.is_dir():
        return
    finished = sorted(
        d for d in runs.iterdir() if d.is_dir() and d != current and not (d / "runner.pid").exists()
    )
    for old in finished[: max(0, len(finished) - (_RUNS_KEPT - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def _lock_host() -> TextIO:
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


def _remove_leftovers_of_killed_runs(runs: Path) -> None:
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
        _kill_processes_naming(markers)
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
            _keep_dataplane(dataplane, run)
        pid_file.unlink(missing_ok=True)


# the programs a run starts (NGINX aside: see stop_nginx); Python ones by module
_RUN_PROGRAMS = (b"etcd", b"kube-apiserver", b"kube-controller-manager", b"conformance.test")
_RUN_MODULES = (b"devcluster.nodeagent", b"agc_controller.cli")


def _kill_processes_naming(markers: list[bytes]) -> None:
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


def _keep_dataplane(dataplane: Path, run_dir: Path) -> None:
    """Move what the data planes left (configs, error logs) into the run directory."""
    shutil.copytree(dataplane, run_dir / "dataplane", symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(dataplane, ignore_errors=True)


@contextlib.contextmanager
def _teardown_uninterrupted() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while tearing down: a second Ctrl-C must not leave
    processes and namespaces behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        say(
            "ERROR: run as root: pods get network namespaces (`ip netns`) and the "
            "Gateways listen on ports 80 and 443"
        )
        return 2
    run_dir = (args.run_dir or _default_run_dir()).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_interrupted)
    started = time.monotonic()
    teardown: Teardown = []
    rc = 1
    try:
        rc = _run(args, run_dir, teardown)
    except RunError as e:
        say(f"ERROR: {e}")
    except ControlPlaneError as e:
        say(f"ERROR: the control plane did not start: {e}")
    except Interrupted as e:
        say(f"interrupted ({e}); tearing down")
        rc = 130
    finally:
        with _teardown_uninterrupted():
            for what, step in reversed(teardown):
                try:
                    step()
                except Exception as e:  # keep tearing down the rest
                    say(f"WARNING: stopping {what} failed: {e}")
            (run_dir / "runner.pid").unlink(missing_ok=True)
        say(f"took {time.monotonic() - started:.0f}s; logs and state in {run_dir}")
    return rc


def _run(args: argparse.Namespace, run_dir: Path, teardown: Teardown) -> int:
    lock = _lock_host()
    teardown.append(("the host lock", lock.close))
    runs = _runs_root()
    _remove_leftovers_of_killed_runs(runs)
    # marks the run as going: what it leaves if killed is found through this
    (run_dir / "runner.pid").write_text(str(os.getpid()))
    _prune_old_runs(runs, run_dir)
    say(f"run directory: {run_dir}")

    testenv = build("testenv.sh")
    binaries = build("conformance-build.sh") / "bin"
    kubeconfig = start_control_plane(testenv, run_dir, args.channel, teardown)
    start_node_agent(kubeconfig, binaries, run_dir, teardown)
    dataplane = start_controller(kubeconfig, run_dir, teardown)

    report_path = run_dir / "report.yaml"
    argv = [
        str(binaries / "conformance.test"),
        "-test.v=test2json",
        "-test.run", "^TestConformance$",
        f"-test.timeout={args.test_timeout}",
        f"-gateway-class={GATEWAY_CLASS}",
        f"-conformance-profiles={','.join(PROFILES)}",
        f"-report-output={report_path}",
        f"-organization={IMPLEMENTATION['organization']}",
        f"-project={IMPLEMENTATION['project']}",
        f"-url={IMPLEMENTATION['url']}",
        f"-version={__version__}",
        f"-contact={IMPLEMENTATION['contact']}",
        f"-agc-dump-dir={run_dir / 'failures'}",
        f"-agc-dataplane-dir={dataplane}",
        f"-usable-address={USABLE_ADDRESS}",
        f"-unusable-address={UNUSABLE_ADDRESS}",
    ]  # fmt: skip
    if args.run_test:
        argv.append(f"-run-test={args.run_test}")
    if args.keep:
        argv += ["-cleanup-base-resources=false", "-cleanup-test-resources=false"]
    argv += args.suite_args
    say(f"running the suite (profiles {', '.join(PROFILES)}; output: {run_dir / 'suite.log'})")
    suite_started = time.monotonic()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    code, results = run_suite(argv, env, run_dir / "suite.log")
    say(f"the suite exited with code {code} after {time.monotonic() - suite_started:.0f}s")

    ok = judge(results, report_path, run_dir, focused=bool(args.run_test))
    if args.keep:
        say(f"--keep: everything stays up; KUBECONFIG={kubeconfig}. Ctrl-C to tear down.")
        with contextlib.suppress(Interrupted):
            signal.pause()
    return 0 if ok else 1


def start_control_plane(testenv: Path, run_dir: Path, channel: str, teardown: Teardown) -> Path:
    """etcd (on tmpfs), kube-apiserver, kube-controller-manager, the CRDs; the kubeconfig."""
    shm = Path("/dev/shm")
    tmpfs = shm if os.access(shm, os.W_OK) else None
    etcd_dir = Path(tempfile.mkdtemp(prefix="agc-conformance-etcd-", dir=tmpfs))
    (run_dir / "etcd-dir").write_text(str(etcd_dir))  # for the next run, if this one is killed
    teardown.append(("etcd data", lambda: shutil.rmtree(etcd_dir, ignore_errors=True)))
    plane = ControlPlane(
        binaries=ControlPlaneBinaries.from_testenv(testenv),
        workdir=run_dir / "control-plane",
        etcd_data_dir=etcd_dir,
    )
    say("starting the control plane (etcd, kube-apiserver, kube-controller-manager)")
    teardown.append(("the control plane", plane.stop))
    plane.start()
    plane.start_controller_manager()
    count = asyncio.run(_install_crds(plane, channel))
    say(f"installed {count} Gateway API {GATEWAY_API_VERSION} CRDs ({channel} channel)")
    return plane.kubeconfig


def start_node_agent(kubeconfig: Path, binaries: Path, run_dir: Path, teardown: Teardown) -> None:
    node = "agc-local"
    argv = [
        sys.executable, "-m", "devcluster.nodeagent",
        "--kubeconfig", str(kubeconfig),
        "--state-dir", str(run_dir / "node-agent"),
        "--node-name", node,
        "--image", f"{ECHO_IMAGE}={binaries / 'echo-basic'}",
        "--image", f"{COREDNS_IMAGE}={binaries / 'coredns'}",
    ]  # fmt: skip
    agent = Child.start("the node agent", argv, run_dir / "node-agent.log")
    teardown.append(("the node agent", lambda: agent.stop(grace=_AGENT_STOP_TIMEOUT)))
    asyncio.run(_wait_node_ready(kubeconfig, node, agent))
    say(f"node agent running: node {node} is Ready")


def start_controller(kubeconfig: Path, run_dir: Path, teardown: Teardown) -> Path:
    """The controller with the local provider, and our GatewayClass; the data plane dir."""
    # NGINX workers (user nobody) use files under it, so it must not be below a
    # private directory ($AGC_CACHE_DIR is in root's home on CI)
    dataplane = Path(tempfile.mkdtemp(prefix="agc-conformance-dataplane-"))
    dataplane.chmod(0o711)
    (run_dir / "dataplane-dir").write_text(str(dataplane))  # found again if this run is killed
    teardown.append(("the data plane files", lambda: _keep_dataplane(dataplane, run_dir)))
    health_port = free_port()
    argv = [
        sys.executable, "-m", "agc_controller.cli",
        "--log-format", "json",
        "run",
        "--kubeconfig", str(kubeconfig),
        "--provider", "local",
        "--local-state-dir", str(dataplane),
        "--no-leader-elect",
        "--health-address", f"127.0.0.1:{health_port}",
        "--shutdown-grace", str(_CONTROLLER_GRACE),
    ]  # fmt: skip
    controller = Child.start("the controller", argv, run_dir / "controller.log")
    # torn down in reverse: the controller first, then the NGINX it leaves running
    teardown.append(("NGINX", lambda: stop_nginx(dataplane)))
    teardown.append(("the controller", lambda: controller.stop(grace=_CONTROLLER_GRACE + 20)))
    _wait_http_ok(f"http://127.0.0.1:{health_port}/readyz", controller, "the controller")
    features = asyncio.run(_apply_gateway_class(kubeconfig, controller))
    say(f"GatewayClass {GATEWAY_CLASS} accepted; supportedFeatures: {', '.join(features)}")
    return dataplane


def judge(results: SuiteResults, report_path: Path, run_dir: Path, *, focused: bool) -> bool:
    """Print the summary (also to summary.txt), publish the report of a complete full run."""
    report = yaml.safe_load(report_path.read_text()) if report_path.exists() else None
    known = read_known_failures(KNOWN_FAILURES)
    with (run_dir / "summary.txt").open("w") as summary:
        summarize(results, report, known, focused=focused, out=summary)
    ok = summarize(results, report, known, focused=focused, out=sys.stdout)
    if report is None:
        ok = False
        print(f"  No report was written; see {run_dir / 'suite.log'}")
    elif not focused and results.suite_outcome is not None and not results.fatal:
        if _same_results(report_path, REPORT):
            print(f"  Report: unchanged but for its date, {REPORT.relative_to(REPO)} kept")
        else:
            REPORT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(report_path, REPORT)
            print(f"  Report: {REPORT.relative_to(REPO)}")
    if failed := results.named("FAIL"):
        by_test = output_by_test(run_dir / "suite.log")
        for name in failed:
            directory = run_dir / "failures" / name
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "test.log").write_text("".join(by_test.get(name, [])))
        print(f"  Each failure's output and cluster state: {run_dir / 'failures'}/<test>/")
    print(f"  {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


def _same_results(new: Path, committed: Path) -> bool:
    """Whether two reports differ in nothing but the date they were made and the
    order of their profiles (the suite lists them in map order): a run that
    changes no result leaves the committed report (and the tree) alone."""
    if not committed.exists():
        return False

    def undated(path: Path) -> Any:
        report = yaml.safe_load(path.read_text())
        if isinstance(report, dict):
            report.pop("date", None)
            report["profiles"] = sorted(report.get("profiles") or [], key=lambda p: p.get("name"))
        return report

    return bool(undated(new) == undated(committed))


if __name__ == "__main__":
    sys.exit(main())
