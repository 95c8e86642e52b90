"""`python -m devcluster`: the embedded default that `make run` starts.

A local control plane (etcd + kube-apiserver + kube-controller-manager) with
the Gateway API CRDs, the example backends, the controller with the local NGINX
data plane against it, and the examples/ manifests, until Ctrl-C.

Invariants:
- The banner and its curl lines are printed only once THIS run serves them: the
  example Gateway's conditions a previous run left in the state directory are
  reset before the controller starts, the banner waits for a Programmed=True
  written since, and then for every printed curl line to answer as it says
  (examples.wait_serving). A bounded wait that runs out says so instead.
- On a terminal the person sees progress lines and the banner; the controller's
  own logs start at warnings there (`--log-level info` shows them all).
  Elsewhere (CI, a pipe) the logs stay at info, as JSON.
- Everything started here is stopped here: backends and their network
  namespace, then the control plane, on any exit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from kubernetes_asyncio import client

from agc_controller.cli import (
    add_controller_options,
    add_log_options,
    configure_logs,
    run_controller,
)
from agc_controller.factory import LocalOptions
from agc_controller.kube.client import api_client
from agc_controller.settings import Settings
from devcluster import examples
from devcluster.controlplane import ControlPlane, ControlPlaneBinaries, ControlPlaneError
from devcluster.crds import CHANNELS, install_gateway_api_crds, install_own_crds
from devcluster.netns import NetnsError

log = structlog.get_logger("devcluster.run")

PROG = "python -m devcluster"
# what a person's terminal shows of the controller's logs unless told otherwise
TERMINAL_LOG_LEVEL = "warning"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the embedded default (the local job): start etcd, kube-apiserver and "
        "kube-controller-manager on loopback, install the Gateway API CRDs, start the example "
        "backends, and run the controller with the local NGINX data plane until interrupted.",
    )
    add_log_options(parser)
    # None: neither --log-level nor AGC_LOG_LEVEL, and main() picks by the terminal
    parser.set_defaults(log_level=os.environ.get("AGC_LOG_LEVEL"))
    parser.add_argument(
        "--testenv",
        type=Path,
        default=os.environ.get("AGC_TESTENV"),
        help="directory with bin/ and crds/ built by `make testenv` (env AGC_TESTENV)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("AGC_STATE_DIR", ".cache/local")),
        help="where the local cluster keeps its PKI, etcd data and logs (env AGC_STATE_DIR)",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        default=Path(os.environ.get("AGC_EXAMPLES", "examples")),
        help="manifests to apply once the controller runs (env AGC_EXAMPLES)",
    )
    parser.add_argument(
        "--channel",
        choices=CHANNELS,
        default="standard",
        help="Gateway API release channel to install (choose on a fresh state dir)",
    )
    add_controller_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.log_level = log_level(args.log_level, terminal=sys.stderr.isatty())
    configure_logs(args)
    try:
        return _run_local(args)
    except (ControlPlaneError, NetnsError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1


def log_level(explicit: str | None, *, terminal: bool) -> str:
    """The log level: the one asked for, else TERMINAL_LOG_LEVEL for a person's
    terminal (the banner is for them; the controller's chatter stays out of its
    way) and info for a machine reading the logs."""
    if explicit is not None:
        return explicit
    return TERMINAL_LOG_LEVEL if terminal else "info"


def say(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


def _run_local(args: argparse.Namespace) -> int:
    """The main job: local control plane, controller with the local NGINX data plane,
    example backends and the examples/ manifests, until Ctrl-C."""
    if args.testenv is None:
        print(
            f"{PROG}: --testenv (or AGC_TESTENV) is required: build the control plane "
            "with `make testenv` and pass the directory it prints.",
            file=sys.stderr,
        )
        return 2
    if os.geteuid() != 0:
        print(
            f"{PROG}: run as root: the example backends live in a network "
            "namespace of their own (`ip netns`), and listeners bind ports 80 and 443.",
            file=sys.stderr,
        )
        return 2
    manifests = examples.load_manifests(args.examples)
    plane = ControlPlane(
        binaries=ControlPlaneBinaries.from_testenv(args.testenv), workdir=args.state_dir.resolve()
    )
    say(f"starting the control plane (state in {plane.workdir})")
    log.info("control_plane_starting", state_dir=str(plane.workdir))
    plane.start()
    backends = None
    try:
        plane.start_controller_manager()
        asyncio.run(_prepare_cluster(plane, args.channel))
        say("starting the example backends (blue, green)")
        backends = examples.start_backends()
        settings = Settings(
            controller_name=args.controller_name,
            ingress_controller=args.ingress_controller,
            workers=args.workers,
            leader_election=False,
        )
        local = LocalOptions(args.local_state_dir.resolve(), args.local_port_offset)
        # Kubernetes times have whole seconds: a condition written from now on is no older
        started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

        async def show_example(api: client.ApiClient) -> None:
            say("starting the controller and applying examples/")
            await examples.apply_examples(api, manifests)
            gateway = await examples.wait_programmed(api, since=started, report=say)
            ingress = await examples.ingress_address(api)
            if ingress is None:
                say("the example Ingress has no address yet; its curl lines are left out")
            checks = examples.curl_checks(gateway, port_offset=local.port_offset, ingress=ingress)
            say("the Gateway is programmed; trying the example requests")
            failures = await examples.wait_serving(checks)
            # read again: the status seen programmed may predate the routes' attaching
            # (the examples arrive one by one), and the banner shows attachedRoutes
            gateway = await examples.read_gateway(api)
            print(
                f"\nagc-controller is running: control plane at {plane.server}, local NGINX "
                "data plane.\n"
                + examples.describe(
                    gateway, checks, kubeconfig=plane.kubeconfig, kubectl=plane.binaries.kubectl
                )
                + examples.describe_failures(failures)
                + "\n\nPress Ctrl-C to stop.\n",
                flush=True,
            )

        asyncio.run(
            run_controller(
                plane.kubeconfig,
                settings,
                provider=args.provider,
                local=local,
                once_running=show_example,
            )
        )
    finally:
        if backends is not None:
            backends.destroy()
        plane.stop()
        log.info("control_plane_stopped")
    return 0


async def _prepare_cluster(plane: ControlPlane, channel: str) -> None:
    """The CRDs, and no status of an earlier run that the banner could trust."""
    api = await api_client(plane.kubeconfig)
    async with api:
        crds = await install_gateway_api_crds(api, plane.binaries.crds, channel=channel)
        log.info("gateway_api_crds_installed", channel=channel, count=len(crds))
        own = await install_own_crds(api)
        log.info("own_crds_installed", count=len(own))
        say(f"installed {len(crds)} Gateway API CRDs ({channel} channel) and {len(own)} of ours")
        await examples.forget_previous_status(api)
