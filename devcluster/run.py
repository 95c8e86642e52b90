"""`python -m devcluster`: the embedded default that `make run` starts.

A local control plane (etcd + kube-apiserver + kube-controller-manager) with
the Gateway API CRDs, the example backends, the controller with the local NGINX
data plane against it, and the examples/ manifests, until Ctrl-C.

Invariant: everything started here is stopped here: backends and their network
namespace, then the control plane, on any exit.
"""

from __future__ import annotations

import argparse
import asyncio
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
from agc_controller.kube.client import api_client
from agc_controller.providers.factory import LocalOptions
from agc_controller.settings import Settings
from devcluster import examples
from devcluster.controlplane import ControlPlane, ControlPlaneBinaries, ControlPlaneError
from devcluster.crds import CHANNELS, install_gateway_api_crds

log = structlog.get_logger("devcluster.run")

PROG = "python -m devcluster"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the embedded default (the local job): start etcd, kube-apiserver and "
        "kube-controller-manager on loopback, install the Gateway API CRDs, start the example "
        "backends, and run the controller with the local NGINX data plane until interrupted.",
    )
    add_log_options(parser)
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
    configure_logs(args)
    try:
        return _run_local(args)
    except ControlPlaneError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1


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
    log.info("control_plane_starting", state_dir=str(plane.workdir))
    plane.start()
    backends = None
    try:
        plane.start_controller_manager()
        asyncio.run(_install_crds(plane, args.channel))
        backends = examples.start_backends()
        settings = Settings(
            controller_name=args.controller_name, workers=args.workers, leader_election=False
        )
        local = LocalOptions(args.local_state_dir.resolve(), args.local_port_offset)

        async def show_example(api: client.ApiClient) -> None:
            await examples.apply_examples(api, manifests)
            gateway = await examples.wait_programmed(api)
            print(
                f"\nagc-controller is running: control plane at {plane.server}, local NGINX "
                "data plane.\n"
                + examples.describe(
                    gateway, port_offset=local.port_offset, kubeconfig=plane.kubeconfig
                )
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


async def _install_crds(plane: ControlPlane, channel: str) -> None:
    api = await api_client(plane.kubeconfig)
    async with api:
        crds = await install_gateway_api_crds(api, plane.binaries.crds, channel=channel)
    log.info("gateway_api_crds_installed", channel=channel, count=len(crds))
