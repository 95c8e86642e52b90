"""Run the official Gateway API conformance suite against agc-controller on this host.

    .venv/bin/python hack/conformance.py            (as root; `make conformance` does it)
    .venv/bin/python -m devcluster.conformance      (the same, from the repository root)

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
only when the failing tests are exactly the listed ones and nothing else failed
(the suite's exit code and its own result agree; verdict.py), and when the
GatewayClass claims exactly conformance/supported-features.txt. Everything the run
produced (suite output, controller, node agent and control plane logs, NGINX
configs, a state dump per failed test) stays in the run directory it prints.

Invariants:
- Every process started here is stopped here, by pid, newest first, on any
  exit including Ctrl-C and SIGTERM; a second signal during teardown is ignored
  so teardown completes. Children also get SIGTERM if this process dies
  (PR_SET_PDEATHSIG); NGINX, which outlives the controller by design, is
  stopped through the pid files in the run's data plane directory.
  (processes.py)
- One run per host at a time (HOST_LOCK); a run starts by removing what a run
  killed outright left (found through the runner.pid files of run directories; rundirs.py).
- The committed report (conformance/reports/) is replaced only by a full run
  that passed; a focused, failed or failed-to-start run leaves it alone
  (report.py). A run is full when it runs the default configuration: no
  --run-test, no --keep, the experimental channel, no suite flag but -debug
  (`focus`); any other is focused, judged on the tests it ran alone.

The steps live in modules with one job each: cluster.py starts what the suite
runs against, processes.py supervises processes, suiteoutput.py parses the
suite's output, features.py holds the GatewayClass's claim to the pinned
features, verdict.py judges the run against the known failures and that claim,
report.py writes the outcome, rundirs.py keeps run directories and the host lock.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from pathlib import Path

from agc_controller import __version__
from devcluster.cluster import build_images, build_node
from devcluster.conformance.base import (
    GATEWAY_CLASS,
    IMPLEMENTATION,
    IN_CLUSTER_REPORT,
    KNOWN_FAILURES,
    PROFILES,
    REPORT,
    UNUSABLE_ADDRESS,
    Interrupted,
    RunError,
    Teardown,
    say,
)
from devcluster.conformance.cluster import (
    start_control_plane,
    start_controller,
    start_in_cluster,
    start_node_agent,
)
from devcluster.conformance.features import (
    SUPPORTED_FEATURES,
    expected_claim,
    read_pinned_features,
)
from devcluster.conformance.processes import (
    build,
    raise_interrupted,
    run_suite,
    teardown_uninterrupted,
)
from devcluster.conformance.report import judge
from devcluster.conformance.rundirs import (
    default_run_dir,
    lock_host,
    prune_old_runs,
    remove_leftovers_of_killed_runs,
    runs_root,
)
from devcluster.conformance.verdict import Expected, read_known_failures
from devcluster.controlplane import ControlPlaneError

# suite flags that change neither which tests run nor what they see
_NEUTRAL_SUITE_FLAGS = frozenset({"debug"})


def focus(args: argparse.Namespace) -> list[str]:
    """What makes this run other than the full default one (nothing: it is full).
    Any suite flag but -debug counts: -run-test, -skip-tests, -supported-features,
    -all-features, -conformance-profiles, -test.run, ... change what runs."""
    reasons = []
    if args.run_test:
        reasons.append(f"--run-test {args.run_test}")
    if args.keep:
        reasons.append("--keep (each test leaves its objects to the tests after it)")
    if args.channel != "experimental":
        reasons.append(f"--channel {args.channel}")
    if others := [a for a in args.suite_args if _flag_name(a) not in _NEUTRAL_SUITE_FLAGS]:
        reasons.append("suite flags " + " ".join(others))
    return reasons


def _flag_name(arg: str) -> str:
    """`-name`, `--name`, `-name=value` -> name; anything else (a value) as it is."""
    return arg.lstrip("-").partition("=")[0] if arg.startswith("-") else arg


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
        "--in-cluster",
        action="store_true",
        help="run against the Helm chart installed onto a real node (kubelet, containerd) "
        "from our images, a data-plane Deployment per Gateway, instead of the embedded "
        "controller with NGINX processes; its own report",
    )
    parser.add_argument(
        "--run-test",
        metavar="NAME",
        help="run one test (e.g. HTTPRouteSimpleSameNamespace); passes when it passes; the "
        "committed report is kept",
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        say(
            "ERROR: run as root: pods get network namespaces (`ip netns`) and the "
            "Gateways listen on ports 80 and 443"
        )
        return 2
    run_dir = (args.run_dir or default_run_dir()).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, raise_interrupted)
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
        with teardown_uninterrupted():
            for what, step in reversed(teardown):
                try:
                    step()
                except Exception as e:  # keep tearing down the rest
                    say(f"WARNING: stopping {what} failed: {e}")
            (run_dir / "runner.pid").unlink(missing_ok=True)
        say(f"took {time.monotonic() - started:.0f}s; logs and state in {run_dir}")
    return rc


def _run(args: argparse.Namespace, run_dir: Path, teardown: Teardown) -> int:
    # read first: a malformed list stops the run before it starts anything
    dataplane = "deployment" if args.in_cluster else "process"
    expected = Expected(
        known_failures=read_known_failures(KNOWN_FAILURES),
        features=expected_claim(read_pinned_features(SUPPORTED_FEATURES, dataplane), args.channel),
    )
    lock = lock_host()
    teardown.append(("the host lock", lock.close))
    runs = runs_root()
    remove_leftovers_of_killed_runs(runs)
    # marks the run as going: what it leaves if killed is found through this
    (run_dir / "runner.pid").write_text(str(os.getpid()))
    prune_old_runs(runs, run_dir)
    say(f"run directory: {run_dir}")

    binaries = build("conformance-build.sh") / "bin"
    if args.in_cluster:
        testenv, node = build_node()
        kubeconfig, controller = start_in_cluster(
            testenv,
            node=node,
            images=build_images(),
            backends=build_images("conformance-images.sh"),
            run_dir=run_dir,
            channel=args.channel,
            teardown=teardown,
        )
    else:
        testenv = build("testenv.sh")
        kubeconfig = start_control_plane(testenv, run_dir, args.channel, teardown)
        start_node_agent(kubeconfig, binaries, run_dir, teardown)
        controller = start_controller(kubeconfig, run_dir, teardown)

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
        f"-usable-address={controller.usable_address}",
        f"-unusable-address={UNUSABLE_ADDRESS}",
    ]  # fmt: skip
    if controller.dataplane is None:
        argv += ["-mode=in-cluster", "-agc-dataplane-pods"]
    else:
        argv.append(f"-agc-dataplane-dir={controller.dataplane}")
    if args.run_test:
        argv.append(f"-run-test={args.run_test}")
    if args.keep:
        argv += ["-cleanup-base-resources=false", "-cleanup-test-resources=false"]
    argv += args.suite_args
    if focused := focus(args):
        say(
            f"a focused run ({'; '.join(focused)}): it passes when every test it runs passes; "
            "the committed report is kept"
        )
    say(f"running the suite (profiles {', '.join(PROFILES)}; output: {run_dir / 'suite.log'})")
    suite_started = time.monotonic()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    code, results = run_suite(argv, env, run_dir / "suite.log")
    say(f"the suite exited with code {code} after {time.monotonic() - suite_started:.0f}s")

    ok = judge(
        results,
        exit_code=code,
        claimed_features=controller.claimed_features,
        report_path=report_path,
        committed_report=IN_CLUSTER_REPORT if args.in_cluster else REPORT,
        run_dir=run_dir,
        expected=expected,
        focused=bool(focused),
    )
    if args.keep:
        say(f"--keep: everything stays up; KUBECONFIG={kubeconfig}. Ctrl-C to tear down.")
        with contextlib.suppress(Interrupted):
            signal.pause()
    return 0 if ok else 1
