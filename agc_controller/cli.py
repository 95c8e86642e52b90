"""Command line: `agc-controller {local,version}`.

`local` is the embedded default: a local control plane (etcd + kube-apiserver
+ kube-controller-manager) with the Gateway API CRDs installed, for `kubectl`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from agc_controller import __version__, logs
from agc_controller.kube import api_client_from_kubeconfig
from agc_controller.localcluster import ControlPlane, ControlPlaneBinaries, install_gateway_api_crds
from agc_controller.localcluster.controlplane import ControlPlaneError
from agc_controller.localcluster.crds import CHANNELS

log = structlog.get_logger("agc_controller.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agc-controller",
        description="A Gateway API controller for L7 load balancers (local NGINX or Azure).",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("AGC_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (env AGC_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=os.environ.get("AGC_LOG_FORMAT"),
        help="log format; default: console on a terminal, json otherwise (env AGC_LOG_FORMAT)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("version", help="print the version and exit")

    local = commands.add_parser(
        "local",
        help="run the embedded default: a local control plane with the Gateway API CRDs",
        description="Start etcd, kube-apiserver and kube-controller-manager on loopback, "
        "install the Gateway API CRDs and keep running until interrupted.",
    )
    local.add_argument(
        "--testenv",
        type=Path,
        default=os.environ.get("AGC_TESTENV"),
        help="directory with bin/ and crds/ built by `make testenv` (env AGC_TESTENV)",
    )
    local.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("AGC_STATE_DIR", ".cache/local")),
        help="where the local cluster keeps its PKI, etcd data and logs (env AGC_STATE_DIR)",
    )
    local.add_argument(
        "--channel",
        choices=CHANNELS,
        default="standard",
        help="Gateway API release channel to install (choose on a fresh state dir)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    json_logs = None if args.log_format is None else args.log_format == "json"
    logs.configure(level=args.log_level, json=json_logs)
    if args.command == "version":
        print(f"agc-controller {__version__}")
        return 0
    try:
        return _run_local(args)
    except ControlPlaneError as e:
        print(f"agc-controller: {e}", file=sys.stderr)
        return 1


def _run_local(args: argparse.Namespace) -> int:
    if args.testenv is None:
        print(
            "agc-controller: --testenv (or AGC_TESTENV) is required: build the control plane "
            "with `make testenv` and pass the directory it prints.",
            file=sys.stderr,
        )
        return 2
    plane = ControlPlane(
        binaries=ControlPlaneBinaries.from_testenv(args.testenv), workdir=args.state_dir.resolve()
    )
    log.info("control_plane_starting", state_dir=str(plane.workdir))
    plane.start()
    try:
        plane.start_controller_manager()
        asyncio.run(_serve_local(plane, args.channel))
    finally:
        plane.stop()
        log.info("control_plane_stopped")
    return 0


async def _serve_local(plane: ControlPlane, channel: str) -> None:
    api = await api_client_from_kubeconfig(plane.kubeconfig)
    async with api:
        crds = await install_gateway_api_crds(api, plane.binaries.crds, channel=channel)
    log.info("gateway_api_crds_installed", channel=channel, count=len(crds))
    print(
        f"\nThe local control plane is up at {plane.server}.\n"
        f"  export KUBECONFIG={plane.kubeconfig}\n"
        "  kubectl get crds\n"
        "Not there yet: the controller's reconcile loop and the NGINX data plane "
        "(see README.md, 'Supported features').\nPress Ctrl-C to stop.\n",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
