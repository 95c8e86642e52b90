"""Command line: `agc-controller {run,local,version}`.

`run` is the controller against a cluster (in-cluster service account, or a
kubeconfig). `local` is the embedded default: a local control plane (etcd +
kube-apiserver + kube-controller-manager) with the Gateway API CRDs, and the
controller running against it.
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
from agc_controller.kube.client import api_client
from agc_controller.localcluster import ControlPlane, ControlPlaneBinaries, install_gateway_api_crds
from agc_controller.localcluster.controlplane import ControlPlaneError
from agc_controller.localcluster.crds import CHANNELS
from agc_controller.providers.memory import MemoryProvider
from agc_controller.runtime.manager import Controller
from agc_controller.settings import Settings
from agc_controller.translate import TranslateSettings
from agc_controller.translate.settings import DEFAULT_CONTROLLER_NAME

log = structlog.get_logger("agc_controller.cli")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _add_controller_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--controller-name",
        default=_env("AGC_CONTROLLER_NAME", DEFAULT_CONTROLLER_NAME),
        help="GatewayClasses with this spec.controllerName are ours (env AGC_CONTROLLER_NAME)",
    )
    parser.add_argument(
        "--provider",
        choices=["memory"],
        default=_env("AGC_PROVIDER", "memory"),
        help="data plane: memory = translate and write status only, program nothing "
        "(env AGC_PROVIDER)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(_env("AGC_WORKERS", "4")),
        help="concurrent reconciles (env AGC_WORKERS)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agc-controller",
        description="A Gateway API controller for L7 load balancers (local NGINX or Azure).",
    )
    parser.add_argument(
        "--log-level",
        default=_env("AGC_LOG_LEVEL", "info"),
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

    run = commands.add_parser(
        "run",
        help="run the controller against a cluster",
        description="Watch Gateway API objects and reconcile them. In a pod, uses the service "
        "account unless --kubeconfig is given.",
    )
    run.add_argument("--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG"))
    _add_controller_options(run)
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env("AGC_LEADER_ELECT", "true") == "true",
        help="elect one active replica through a Lease (env AGC_LEADER_ELECT)",
    )
    run.add_argument(
        "--lease-namespace",
        default=_env("POD_NAMESPACE", "default"),
        help="namespace of the leader-election Lease (env POD_NAMESPACE)",
    )

    local = commands.add_parser(
        "local",
        help="run the embedded default: a local control plane and the controller",
        description="Start etcd, kube-apiserver and kube-controller-manager on loopback, "
        "install the Gateway API CRDs, and run the controller until interrupted.",
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
        default=Path(_env("AGC_STATE_DIR", ".cache/local")),
        help="where the local cluster keeps its PKI, etcd data and logs (env AGC_STATE_DIR)",
    )
    local.add_argument(
        "--channel",
        choices=CHANNELS,
        default="standard",
        help="Gateway API release channel to install (choose on a fresh state dir)",
    )
    _add_controller_options(local)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    json_logs = None if args.log_format is None else args.log_format == "json"
    logs.configure(level=args.log_level, json=json_logs)
    if args.command == "version":
        print(f"agc-controller {__version__}")
        return 0
    if args.command == "run":
        settings = Settings(
            controller_name=args.controller_name,
            workers=args.workers,
            leader_election=args.leader_elect,
            lease_namespace=args.lease_namespace,
        )
        asyncio.run(_run_controller(args.kubeconfig, settings))
        return 0
    try:
        return _run_local(args)
    except ControlPlaneError as e:
        print(f"agc-controller: {e}", file=sys.stderr)
        return 1


async def _run_controller(kubeconfig: Path | None, settings: Settings, *, banner: str = "") -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api = await api_client(kubeconfig)
    async with api:
        controller = Controller(
            api,
            settings=settings,
            translate_settings=TranslateSettings(controller_name=settings.controller_name),
            provider=MemoryProvider(),
        )
        if banner:
            print(banner, flush=True)
        await controller.run(stop)


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
        asyncio.run(_install_crds(plane, args.channel))
        settings = Settings(
            controller_name=args.controller_name, workers=args.workers, leader_election=False
        )
        banner = (
            f"\nThe local control plane is up at {plane.server}; the controller is running.\n"
            f"  export KUBECONFIG={plane.kubeconfig}\n"
            "  kubectl get gatewayclasses,gateways,httproutes -A\n"
            f"GatewayClasses with controllerName {settings.controller_name} are reconciled.\n"
            "Not there yet: the NGINX data plane. Gateways get status, but the memory provider\n"
            "programs nothing, so their addresses (192.0.2.0/24, TEST-NET) serve no traffic.\n"
            "Press Ctrl-C to stop.\n"
        )
        asyncio.run(_run_controller(plane.kubeconfig, settings, banner=banner))
    finally:
        plane.stop()
        log.info("control_plane_stopped")
    return 0


async def _install_crds(plane: ControlPlane, channel: str) -> None:
    api = await api_client(plane.kubeconfig)
    async with api:
        crds = await install_gateway_api_crds(api, plane.binaries.crds, channel=channel)
    log.info("gateway_api_crds_installed", channel=channel, count=len(crds))


if __name__ == "__main__":
    sys.exit(main())
