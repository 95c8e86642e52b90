"""Command line: `agc-controller {run,dataplane,translate,version}`.

`run` is the controller against a cluster (in-cluster service account, or a
kubeconfig), with the probe/metrics endpoint; SIGTERM or SIGINT stops it in
order within `--shutdown-grace`. The embedded default that `make run` starts (a
local control plane with the controller against it) is the dev cluster's
(`python -m devcluster`, outside this package), built on `add_controller_options`
and `run_controller`. `translate` needs no
cluster: YAML files in, the ALB model and statuses out (outputs come from the
registry in render.py, which providers extend). `dataplane` is the agent of a
data-plane pod (`run --local-dataplane deployment` provisions those pods): it
runs NGINX with the configuration the controller wrote into a Secret.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import attrs
import structlog
from kubernetes_asyncio import client

from agc_controller import __version__, logs, render
from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.agent import Agent, AgentMesh, run_agent
from agc_controller.dataplane.manifests import MESH_ROOTS_FILE, MESH_TOKEN_FILE, STATE_DIR
from agc_controller.dataplane.settings import SERVICE_TYPES, DataPlaneSettings
from agc_controller.factory import (
    PROVIDERS,
    LocalOptions,
    MeshOptions,
    check_mesh,
    open_provider,
)
from agc_controller.kube.client import api_client
from agc_controller.manager import LEADER_RETRY_PERIOD, SHUTDOWN_GRACE, Controller
from agc_controller.mesh import IstioCA, RootsFile, TokenFile, spiffe_id
from agc_controller.providers.local import LocalProvider
from agc_controller.providers.local.static import ACCESS_LOGS, StaticSettings
from agc_controller.runtime.health import parse_address, serving_health
from agc_controller.settings import LOCAL_DATAPLANE_MODES, Settings
from agc_controller.translate import Snapshot
from agc_controller.translate.settings import DEFAULT_CONTROLLER_NAME, DEFAULT_INGRESS_CONTROLLER

log = structlog.get_logger("agc_controller.cli")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def add_log_options(parser: argparse.ArgumentParser) -> None:
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


def configure_logs(args: argparse.Namespace) -> None:
    """Logging as `add_log_options` asked: an explicit format wins over the terminal test."""
    json_logs = None if args.log_format is None else args.log_format == "json"
    logs.configure(level=args.log_level, json=json_logs)


def add_controller_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--controller-name",
        default=_env("AGC_CONTROLLER_NAME", DEFAULT_CONTROLLER_NAME),
        help="GatewayClasses with this spec.controllerName are ours (env AGC_CONTROLLER_NAME)",
    )
    _add_ingress_controller_option(parser)
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=_env("AGC_PROVIDER", "local"),
        help="data plane: local = NGINX on this host, azure = Application Gateway v2, "
        "memory = write status only, program nothing (env AGC_PROVIDER)",
    )
    parser.add_argument(
        "--local-state-dir",
        type=Path,
        default=Path(_env("AGC_LOCAL_STATE_DIR", "/tmp/agc-controller/dataplane")),
        help="local provider: where each Gateway's NGINX keeps its files (env AGC_LOCAL_STATE_DIR)",
    )
    parser.add_argument(
        "--local-port-offset",
        type=int,
        default=int(_env("AGC_LOCAL_PORT_OFFSET", "0")),
        help="local provider: add this to listener ports when binding, e.g. 8000 to run "
        "without root (env AGC_LOCAL_PORT_OFFSET)",
    )
    parser.add_argument(
        "--access-log",
        choices=ACCESS_LOGS,
        default=_env("AGC_ACCESS_LOG", "file"),
        help="local provider: one JSON line per request into each Gateway's access.log under "
        "--local-state-dir (file), to standard output (stdout), or none (env AGC_ACCESS_LOG)",
    )
    parser.add_argument(
        "--mesh-identity",
        metavar="NAMESPACE/SERVICEACCOUNT",
        default=_env("AGC_MESH_IDENTITY", ""),
        help="local provider: reach Services in Istio-injected namespaces over the mesh's mTLS "
        "(docs/mesh.md; env AGC_MESH_IDENTITY). The controller obtains this service account's "
        "workload identity and checks mesh endpoints with it; NGINX processes present it too, "
        "while data-plane pods (--local-dataplane deployment) present their own",
    )
    _add_mesh_ca_options(
        parser,
        address="istiod.istio-system.svc:15012",
        address_help="istiod's certificate service, host:port",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(_env("AGC_WORKERS", "4")),
        help="concurrent reconciles (env AGC_WORKERS)",
    )


def _add_ingress_controller_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ingress-controller",
        default=_env("AGC_INGRESS_CONTROLLER", DEFAULT_INGRESS_CONTROLLER),
        help="IngressClasses with this spec.controller are ours, and so are their Ingresses "
        "(env AGC_INGRESS_CONTROLLER; AGIC's is azure/application-gateway)",
    )


def _add_mesh_ca_options(
    parser: argparse.ArgumentParser, *, address: str, address_help: str
) -> None:
    """Where istiod signs workload certificates: the controller's and the agent's options."""
    parser.add_argument(
        "--mesh-ca-address",
        default=_env("AGC_MESH_CA_ADDRESS", address),
        help=f"{address_help} (env AGC_MESH_CA_ADDRESS)",
    )
    parser.add_argument(
        "--mesh-ca-server-name",
        default=_env("AGC_MESH_CA_SERVER_NAME", "istiod.istio-system.svc"),
        help="the name istiod's serving certificate carries (env AGC_MESH_CA_SERVER_NAME)",
    )
    parser.add_argument(
        "--mesh-trust-domain",
        default=_env("AGC_MESH_TRUST_DOMAIN", "cluster.local"),
        help="the mesh's trust domain (env AGC_MESH_TRUST_DOMAIN)",
    )


def _add_dataplane_options(parser: argparse.ArgumentParser) -> None:
    defaults = DataPlaneSettings()
    parser.add_argument(
        "--local-dataplane",
        choices=LOCAL_DATAPLANE_MODES,
        default=_env("AGC_LOCAL_DATAPLANE", "process"),
        help="local provider: process = NGINX child processes on this host; deployment = a "
        "data-plane Deployment and Service per Gateway, configured through a Secret "
        "(env AGC_LOCAL_DATAPLANE)",
    )
    parser.add_argument(
        "--dataplane-image",
        default=_env("AGC_DATAPLANE_IMAGE", defaults.image),
        help="deployment mode: the data-plane image (env AGC_DATAPLANE_IMAGE)",
    )
    parser.add_argument(
        "--dataplane-image-pull-policy",
        default=_env("AGC_DATAPLANE_IMAGE_PULL_POLICY", defaults.image_pull_policy),
        help="deployment mode: its pull policy (env AGC_DATAPLANE_IMAGE_PULL_POLICY)",
    )
    parser.add_argument(
        "--dataplane-image-pull-secrets",
        type=_names,
        default=_names(_env("AGC_DATAPLANE_IMAGE_PULL_SECRETS", "")),
        metavar="NAME[,NAME...]",
        help="deployment mode: Secrets the data-plane pods pull the image with, each in every "
        "Gateway's namespace (env AGC_DATAPLANE_IMAGE_PULL_SECRETS)",
    )
    parser.add_argument(
        "--dataplane-replicas",
        type=int,
        default=int(_env("AGC_DATAPLANE_REPLICAS", str(defaults.replicas))),
        help="deployment mode: data-plane pods per Gateway unless its annotation "
        "dataplane.agc-controller.io/replicas says otherwise (env AGC_DATAPLANE_REPLICAS)",
    )
    parser.add_argument(
        "--dataplane-service-type",
        choices=SERVICE_TYPES,
        default=_env("AGC_DATAPLANE_SERVICE_TYPE", defaults.service_type),
        help="deployment mode: the type of each Gateway's Service unless its annotation "
        "dataplane.agc-controller.io/service-type says otherwise (env AGC_DATAPLANE_SERVICE_TYPE)",
    )
    parser.add_argument(
        "--dataplane-static-addresses",
        type=_networks,
        # a string default goes through `type` too: a bad environment value is a usage error
        default=_env("AGC_DATAPLANE_STATIC_ADDRESSES", ""),
        metavar="CIDR[,CIDR...]",
        help="deployment mode: the ranges a Gateway's spec.addresses may name; each address "
        "becomes an external IP of its Service, for one Gateway at a time (default: none, "
        "spec.addresses is refused) (env AGC_DATAPLANE_STATIC_ADDRESSES)",
    )
    parser.add_argument(
        "--dataplane-resources",
        type=_json_object,
        default=_json_object(_env("AGC_DATAPLANE_RESOURCES", "{}")),
        help="deployment mode: the data-plane container's resources, as JSON "
        '(e.g. {"requests": {"cpu": "100m"}}) (env AGC_DATAPLANE_RESOURCES)',
    )


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names ("" is none)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of CIDRs ("" is none)."""
    try:
        return tuple(ipaddress.ip_network(cidr, strict=True) for cidr in _names(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agc-controller",
        description="A Gateway API controller for L7 load balancers (local NGINX or Azure).",
    )
    add_log_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("version", help="print the version and exit")

    run = commands.add_parser(
        "run",
        help="run the controller against a cluster",
        description="Watch Gateway API objects and reconcile them. In a pod, uses the service "
        "account unless --kubeconfig is given.",
    )
    run.add_argument("--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG"))
    add_controller_options(run)
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
    run.add_argument(
        "--lease-name",
        default=_env("AGC_LEASE_NAME", "agc-controller"),
        help="name of the leader-election Lease (env AGC_LEASE_NAME)",
    )
    run.add_argument(
        "--leader-retry-period",
        type=float,
        default=float(_env("AGC_LEADER_RETRY_PERIOD", str(LEADER_RETRY_PERIOD))),
        help="seconds between lease renewals and between a standby's attempts; a standby "
        "takes a released lease within 2.2x this (env AGC_LEADER_RETRY_PERIOD)",
    )
    run.add_argument(
        "--health-address",
        default=_env("AGC_HEALTH_ADDRESS", ":8080"),
        help="HOST:PORT of /healthz, /readyz and /metrics; empty disables (env AGC_HEALTH_ADDRESS)",
    )
    run.add_argument(
        "--jwks-refresh",
        type=float,
        default=float(_env("AGC_JWKS_REFRESH", "300")),
        help="seconds between fetches of the JWKS documents AuthPolicies name by URL "
        "(env AGC_JWKS_REFRESH)",
    )
    run.add_argument(
        "--jwks-ca-file",
        default=_env("AGC_JWKS_CA_FILE", "") or None,
        help="CA bundle the JWKS servers' certificates are checked against; default: the "
        "system's (env AGC_JWKS_CA_FILE)",
    )
    run.add_argument(
        "--shutdown-grace",
        type=float,
        default=float(_env("AGC_SHUTDOWN_GRACE", str(SHUTDOWN_GRACE))),
        help="seconds from SIGTERM to exit: in-flight work, status, lease release "
        "(env AGC_SHUTDOWN_GRACE); keep it below the pod's terminationGracePeriodSeconds",
    )
    _add_dataplane_options(run)

    dataplane = commands.add_parser(
        "dataplane",
        help="run a data-plane pod's agent: NGINX with the configuration from Secrets",
        description="Watch the Gateway's configuration Secret (a manifest written by the "
        "controller with --local-dataplane deployment), read the shard Secrets it lists, run "
        "NGINX with them, and report each version applied or refused in the Secret's "
        "annotations. In a pod, uses the service account unless --kubeconfig is given.",
    )
    dataplane.add_argument("--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG"))
    dataplane.add_argument(
        "--secret",
        required=True,
        help="name of the configuration Secret to watch (its shards are <name>-s00 to -s15)",
    )
    dataplane.add_argument(
        "--namespace",
        default=_env("POD_NAMESPACE", "default"),
        help="namespace of the Secret (env POD_NAMESPACE)",
    )
    dataplane.add_argument(
        "--pod-name",
        default=_env("POD_NAME", os.environ.get("HOSTNAME", "")),
        help="this pod's name, written into reports (env POD_NAME)",
    )
    dataplane.add_argument(
        "--state-dir",
        type=Path,
        default=Path(_env("AGC_DATAPLANE_STATE_DIR", STATE_DIR)),
        help="where NGINX keeps its files (env AGC_DATAPLANE_STATE_DIR)",
    )
    dataplane.add_argument(
        "--listen-address",
        default=_env("AGC_DATAPLANE_LISTEN_ADDRESS", "0.0.0.0"),
        help="the address NGINX binds the listener ports on (env AGC_DATAPLANE_LISTEN_ADDRESS)",
    )
    dataplane.add_argument(
        "--access-log",
        choices=ACCESS_LOGS,
        default=_env("AGC_ACCESS_LOG", "stdout"),
        help="one JSON line per request to standard output, the container's log (stdout), "
        "into access.log under --state-dir (file), or none (env AGC_ACCESS_LOG)",
    )
    dataplane.add_argument(
        "--drain-seconds",
        type=float,
        default=float(_env("AGC_DRAIN_SECONDS", "5")),
        help="on SIGTERM, seconds of telling clients to close their keep-alive connections "
        "before NGINX stops: the time this pod's endpoint removal takes to reach every proxy "
        "(env AGC_DRAIN_SECONDS); keep it below terminationGracePeriodSeconds",
    )
    dataplane.add_argument(
        "--health-address",
        default=_env("AGC_HEALTH_ADDRESS", ":8081"),
        help="HOST:PORT of /healthz, /readyz and /metrics; empty disables (env AGC_HEALTH_ADDRESS)",
    )
    _add_mesh_ca_options(
        dataplane,
        address="",
        address_help="istiod's certificate service, host:port; given, the pod obtains its own "
        "mesh workload certificate, as its service account (env POD_SERVICE_ACCOUNT), for NGINX "
        "to present to backends in the mesh (docs/mesh.md)",
    )
    dataplane.add_argument(
        "--mesh-token-file",
        type=Path,
        default=Path(_env("AGC_MESH_TOKEN_FILE", MESH_TOKEN_FILE)),
        help="the pod's service-account token with the istio-ca audience, which the kubelet "
        "keeps fresh (env AGC_MESH_TOKEN_FILE)",
    )
    dataplane.add_argument(
        "--mesh-roots-file",
        type=Path,
        default=Path(_env("AGC_MESH_ROOTS_FILE", MESH_ROOTS_FILE)),
        help="the mesh's root certificates: root-cert.pem of the istio-ca-root-cert ConfigMap, "
        "mounted (env AGC_MESH_ROOTS_FILE)",
    )

    available = render.outputs()
    translate = commands.add_parser(
        "translate",
        help="translate Gateway API and Ingress YAML offline and print the result",
        description="Read Gateway API objects and Ingresses (plus IngressClasses, Services, "
        "EndpointSlices, Secrets, ConfigMaps, Namespaces) from files and print what the "
        "controller would program and the status each object would get with the chosen "
        "provider: its capabilities decide what routes are accepted, and what it would "
        "refuse offline shows as Programmed=False; the rest is assumed programmed at "
        "192.0.2.1. No cluster is needed. Certificates and keys appear as digests. "
        "-o gateway-api converts the Ingresses to Gateway API objects for a migration.",
        epilog="outputs: " + "; ".join(f"{o.name}: {o.help}" for o in available.values()),
    )
    translate.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="extend",
        nargs="+",
        required=True,
        metavar="FILE",
        help="YAML file(s) to read; - reads stdin",
    )
    translate.add_argument(
        "-o", "--output", choices=list(available), default="all", help="what to print"
    )
    translate.add_argument(
        "--provider",
        choices=sorted(render.providers()),
        help="whose capabilities and refusals the translation shows (default: local; "
        "-o arm is azure's view, -o nginx local's)",
    )
    translate.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace of objects that name none (as kubectl apply does)",
    )
    translate.add_argument(
        "--controller-name",
        default=_env("AGC_CONTROLLER_NAME", DEFAULT_CONTROLLER_NAME),
        help="GatewayClasses with this spec.controllerName are ours (env AGC_CONTROLLER_NAME)",
    )
    _add_ingress_controller_option(translate)
    translate.add_argument(
        "--gateway-class",
        default="agc",
        help="-o gateway-api: the GatewayClass the converted Gateways name (their "
        "namespace is --namespace's)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logs(args)
    if args.command == "version":
        print(f"agc-controller {__version__}")
        return 0
    if args.command == "translate":
        return _translate(args)
    if args.command == "dataplane":
        return _dataplane(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    settings = Settings(
        controller_name=args.controller_name,
        ingress_controller=args.ingress_controller,
        workers=args.workers,
        leader_election=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        jwks_refresh_s=args.jwks_refresh,
        jwks_ca_file=args.jwks_ca_file,
    )
    try:
        health = parse_address(args.health_address) if args.health_address else None
    except ValueError as e:
        print(f"agc-controller: --health-address: {e}", file=sys.stderr)
        return 2
    try:
        mesh = _mesh_options(args)
    except ValueError as e:
        print(f"agc-controller: --mesh-identity: {e}", file=sys.stderr)
        return 2
    asyncio.run(
        run_controller(
            args.kubeconfig,
            settings,
            provider=args.provider,
            # the data planes outlive this process: a successor adopts them
            local=LocalOptions(
                args.local_state_dir.resolve(),
                args.local_port_offset,
                access_log=args.access_log,
                stop_on_exit=False,
                dataplane=args.local_dataplane,
                mesh=mesh,
                deployment=DataPlaneSettings(
                    image=args.dataplane_image,
                    image_pull_policy=args.dataplane_image_pull_policy,
                    image_pull_secrets=args.dataplane_image_pull_secrets,
                    replicas=args.dataplane_replicas,
                    service_type=args.dataplane_service_type,
                    resources=args.dataplane_resources,
                    home_namespace=args.lease_namespace,
                    static_addresses=args.dataplane_static_addresses,
                ),
            ),
            health=health,
            leader_retry_period=args.leader_retry_period,
            shutdown_grace=args.shutdown_grace,
        )
    )
    return 0


def _mesh_options(args: argparse.Namespace) -> MeshOptions | None:
    if not args.mesh_identity:
        return None
    namespace, _, service_account = args.mesh_identity.partition("/")
    if not namespace or not service_account or "/" in service_account:
        raise ValueError(f"{args.mesh_identity!r} is not NAMESPACE/SERVICEACCOUNT")
    check_mesh(args.provider)
    return MeshOptions(
        namespace=namespace,
        service_account=service_account,
        ca_address=args.mesh_ca_address,
        ca_server_name=args.mesh_ca_server_name,
        trust_domain=args.mesh_trust_domain,
    )


def _dataplane(args: argparse.Namespace) -> int:
    try:
        health = parse_address(args.health_address) if args.health_address else None
    except ValueError as e:
        print(f"agc-controller: --health-address: {e}", file=sys.stderr)
        return 2
    try:
        mesh = _agent_mesh(args)
    except ValueError as e:
        print(f"agc-controller: --mesh-ca-address: {e}", file=sys.stderr)
        return 2
    asyncio.run(_run_dataplane(args, health, mesh))
    return 0


def _agent_mesh(args: argparse.Namespace) -> AgentMesh | None:
    """The pod's own mesh identity, when --mesh-ca-address is given."""
    if not args.mesh_ca_address:
        return None
    service_account = os.environ.get("POD_SERVICE_ACCOUNT", "")
    if not service_account:
        raise ValueError(
            "mesh mTLS needs the pod's service account in env POD_SERVICE_ACCOUNT "
            "(the fieldRef spec.serviceAccountName)"
        )
    return AgentMesh(
        # the pod runs in its Secret's namespace (manifests.py)
        spiffe_id=spiffe_id(args.mesh_trust_domain, args.namespace, service_account),
        ca=IstioCA(args.mesh_ca_address, server_name=args.mesh_ca_server_name),
        token=TokenFile(args.mesh_token_file),
        roots=RootsFile(args.mesh_roots_file),
    )


async def _run_dataplane(
    args: argparse.Namespace, health: tuple[str, int] | None, mesh: AgentMesh | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api = await api_client(args.kubeconfig)
    async with api:
        agent = Agent(
            api,
            namespace=args.namespace,
            secret=args.secret,
            pod=args.pod_name,
            state_dir=args.state_dir.resolve(),
            listen_address=args.listen_address,
            drain_seconds=args.drain_seconds,
            static_settings=StaticSettings(access_log=args.access_log),
            mesh=mesh,
        )
        await run_agent(agent, health=health, stop=stop)


def _translate(args: argparse.Namespace) -> int:
    try:
        loaded = render.load_objects(args.files, default_namespace=args.namespace)
    except render.InputError as e:
        print(f"agc-controller translate: {e}", file=sys.stderr)
        return 1
    for note in loaded.skipped:
        print(f"agc-controller translate: ignored {note}", file=sys.stderr)
    output = render.outputs()[args.output]
    provider_name = args.provider or output.provider or "local"
    if output.provider not in (None, provider_name):
        print(
            f"agc-controller translate: -o {output.name} shows the {output.provider} "
            f"provider's view; use it with --provider {output.provider} (or without --provider)",
            file=sys.stderr,
        )
        return 2
    provider = render.providers()[provider_name]
    settings = attrs.evolve(
        provider.settings(args.controller_name), ingress_controller=args.ingress_controller
    )
    translations = render.translate_all(
        Snapshot.from_objects(loaded.objects),
        settings,
        dry_run=provider.dry_run,
        migration=render.Migration(namespace=args.namespace, gateway_class=args.gateway_class),
    )
    if (
        output.name != "gateway-api"
        and not translations.gateway_classes
        and not translations.ingress_classes
    ):
        print(
            "agc-controller translate: no GatewayClass in the input has controllerName "
            f"{args.controller_name}, so no Gateway is ours (see --controller-name)",
            file=sys.stderr,
        )
    sys.stdout.write(output.render(translations))
    return 0


async def run_controller(
    kubeconfig: Path | None,
    settings: Settings,
    *,
    provider: str,
    local: LocalOptions,
    health: tuple[str, int] | None = None,
    leader_retry_period: float = LEADER_RETRY_PERIOD,
    shutdown_grace: float = SHUTDOWN_GRACE,
    once_running: Callable[[client.ApiClient], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Run the controller until SIGINT/SIGTERM; `once_running` runs beside it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api = await api_client(kubeconfig)
    controller: Controller | None = None

    def requeue(key: ObjectKey) -> None:
        # the provider starts watching before the controller exists; the controller's
        # first pass covers what it saw until then
        if controller is not None:
            controller.requeue_data_plane(key)

    async with (
        api,
        open_provider(
            provider,
            controller_name=settings.controller_name,
            local=local,
            api=api,
            requeue=requeue,
        ) as (data_plane, translate_settings),
    ):
        controller = Controller(
            api,
            settings=settings,
            translate_settings=attrs.evolve(
                translate_settings, ingress_controller=settings.ingress_controller
            ),
            provider=data_plane,
            leader_retry_period=leader_retry_period,
            shutdown_grace=shutdown_grace,
        )
        before_scrape = None
        if isinstance(data_plane, LocalProvider):
            # this host's NGINXes: their request counters join the controller's metrics
            controller.metrics.registry.register(data_plane.traffic)
            before_scrape = data_plane.refresh_traffic_metrics
        async with serving_health(
            health,
            not_ready_reasons=controller.not_ready_reasons,
            registry=controller.metrics.registry,
            before_scrape=before_scrape,
        ):
            helper = asyncio.create_task(once_running(api)) if once_running else None
            try:
                await controller.run(stop)
            finally:
                if helper is not None:
                    helper.cancel()


if __name__ == "__main__":
    sys.exit(main())
