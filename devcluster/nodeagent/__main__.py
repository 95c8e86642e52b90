"""`python -m devcluster.nodeagent`: the node agent as a process (the conformance run).

Spawned with the repository root on PYTHONPATH (devcluster.spawn): devcluster
is not installed. SIGINT or SIGTERM cancels the agent, which stops every pod
and removes what it made before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from agc_controller import logs
from agc_controller.kube import api_client_from_kubeconfig
from devcluster.nodeagent.agent import NodeAgent
from devcluster.podnet import PodNetworkError


def _parse_image(value: str) -> tuple[str, list[str]]:
    repository, sep, argv = value.partition("=")
    if not sep or not repository or not argv:
        raise argparse.ArgumentTypeError(f"--image wants REPO=ARGV0[,ARG...], got {value!r}")
    return repository, argv.split(",")


async def _run_cli(args: argparse.Namespace) -> None:
    api = await api_client_from_kubeconfig(args.kubeconfig)
    async with api:
        agent = NodeAgent(
            api,
            images=dict(args.image),
            state_dir=args.state_dir,
            node_name=args.node_name,
            pod_subnet=args.pod_subnet,
        )
        task = asyncio.create_task(agent.run(), name="node-agent")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.nodeagent",
        description="Run pods bound to one node as local processes (kubelet + scheduler).",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--node-name", default="agc-local")
    parser.add_argument("--pod-subnet", default="10.214.0.0/16")
    parser.add_argument(
        "--image",
        type=_parse_image,
        action="append",
        default=[],
        metavar="REPO=ARGV0[,ARG...]",
        help="run containers of image repository REPO as this program (repeatable)",
    )
    args = parser.parse_args(argv)
    logs.configure()
    try:
        asyncio.run(_run_cli(args))
    except (PodNetworkError, ValueError, RuntimeError) as error:
        print(f"node agent: {error}", file=sys.stderr)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
