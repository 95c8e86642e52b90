"""Golden tests: `cases/<kind>-<scenario>.in.yaml` → `.out.yaml`.

Each input holds Gateway API objects (plus Services, EndpointSlices, Secrets,
ConfigMaps, Namespaces). The output holds, for every GatewayClass and Gateway,
the ALB model and every status translation decides, with the provider result
fixed to "programmed at 192.0.2.1". Certificate material appears as a digest.
Cases named `azure-<kind>-<scenario>` are translated with the azure provider's
settings (its capabilities), `local-<kind>-<scenario>` with the local NGINX data
plane's, `mesh-<kind>-<scenario>` with the local data plane's and mesh mTLS on
(docs/mesh.md), every other case with every capability on.

Second tier, the local data plane: for the cases in NGINX_CASES (together they
cover every feature the router implements), `<case>.nginx` holds what
`agc-controller translate -o nginx` prints — per Gateway the static NGINX
configuration and the router state document (providers/local/state.py) — on
a fixed host (NGINX_HOST), so a change to either shows as a diff here.

Ingress: cases holding Ingresses also pin down their conversion, in
`<case>.gateway-api.yaml` (what `translate -o gateway-api` prints), and prove it
faithful: the printed Gateway API objects, translated as any Gateway's, give the
very model the controller serves the Ingresses with.

Run `pytest tests/golden --update-golden` to rewrite expectations, then read
the diff: it is the review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agc_controller.providers.azure import azure_translate_settings
from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.providers.local.static import HostPaths
from agc_controller.render import (
    ASSUMED_RESULT,
    Migration,
    Translations,
    plain,
    render_all,
    translate_all,
)
from agc_controller.render.documents import render_gateway_api
from agc_controller.render.nginx import render_nginx
from agc_controller.translate import Snapshot, TranslateSettings
from agc_controller.translate.settings import CORE_FEATURES

CASES = Path(__file__).parent / "cases"
SETTINGS = TranslateSettings(
    controller_name="agc-controller.io/gateway-controller",
    supported_features=CORE_FEATURES
    | {"HTTPRouteQueryParamMatching", "HTTPRouteMethodMatching", "BackendTLSPolicy"},
)
AZURE_SETTINGS = azure_translate_settings(SETTINGS.controller_name)
LOCAL_SETTINGS = local_translate_settings(SETTINGS.controller_name)
MESH_SETTINGS = local_translate_settings(SETTINGS.controller_name, mesh=True)
# fixed so that the files show translation, not a provider: "programmed at 192.0.2.1"
RESULT = ASSUMED_RESULT


# the host the `.nginx` files are rendered for
NGINX_HOST = HostPaths(
    modules_dir=Path("/usr/lib/nginx/modules"),
    lua_dir=Path("/opt/agc/lua"),
    njs_dir=Path("/opt/agc/njs"),
    multiarch="x86_64-linux-gnu",
)
NGINX_SOCKETS = Path("/run/agc-controller")
# cases whose NGINX configuration and router state are pinned down, by feature
NGINX_CASES = (
    "httproute-basic",
    "httproute-precedence-matches",  # path, method, header and query matches; precedence
    "httproute-hostname-precedence",  # exact and wildcard hosts
    "httproute-listener-isolation",
    "httproute-weights",  # weights, invalid backends (500)
    "httproute-filter-header-modifiers",
    "httproute-filter-backend-header-modifier",
    "httproute-filter-redirect",
    "httproute-filter-rewrite",
    "httproute-filter-regex-rewrite",  # our HTTPRouteFilter: ngx.re.sub's template
    "httproute-filter-error-pages",  # our HTTPRouteFilter: error pages locations, plain and TLS
    "httproute-filter-mirror",
    "httproute-filter-cors",
    "httproute-timeouts",
    "httproute-hostile-header-values",  # user strings travel as data, never as config
    "local-httproute-retry-and-session-persistence",
    "gateway-listener-certificate-valid",  # TLS, SNI
    "gateway-frontend-validation-insecure-fallback",  # frontend mTLS
    "backendtlspolicy-configmap-ca",  # upstream TLS locations
    "gateway-backend-client-certificate",  # backend mTLS
    "grpcroute-method-matching",  # gRPC: the h2c protocol sniffer
    "grpcroute-filters",
    "local-tlsroute-modes",  # TLS passthrough and Terminate by SNI, sharing 443 with HTTPS
    "local-tcproute-udproute",  # TCP and UDP stream servers
    "listenerset-route-attachment",  # a ListenerSet's listeners: a new port, hosts by model name
    "ratelimitpolicy-precedence",  # rate limits on rules, from four levels of policy
    "ratelimitpolicy-concurrency",  # requests in flight, alone and with a rate
    "healthcheckpolicy-basic",  # probes on backends (HTTP, HTTPS, TCP)
    "backendloadbalancingpolicy-basic",  # strategies, slow start, circuit breaker
    "authpolicy-basic",  # IP lists, API keys (digests), basic (htpasswd)
    "webapplicationfirewallpolicy-precedence",  # inspection locations, rule sets, escaping
    "mesh-httproute-injected-namespaces",  # mesh mTLS locations, BackendTLSPolicy first
)


def render(snapshot: Snapshot, settings: TranslateSettings = SETTINGS) -> dict[str, Any]:
    return render_all(translate_all(snapshot, settings, result=RESULT))


def _cases() -> list[Path]:
    return sorted(CASES.glob("*.in.yaml"))


def _objects(case: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(case.read_text()) if doc]


def _settings(case: Path) -> TranslateSettings:
    return {"azure": AZURE_SETTINGS, "local": LOCAL_SETTINGS, "mesh": MESH_SETTINGS}.get(
        case.name.split("-", 1)[0], SETTINGS
    )


def _translations(case: Path) -> Translations:
    """`case` translated under the settings its name asks for."""
    return translate_all(
        Snapshot.from_objects(_objects(case)),
        _settings(case),
        result=RESULT,
        migration=MIGRATION,
    )


# where the conversion of the Ingress cases puts its Gateways
MIGRATION = Migration(namespace="migrated", gateway_class="agc")


def _ingress_cases() -> list[Path]:
    return [c for c in _cases() if any(o["kind"] == "Ingress" for o in _objects(c))]


def _expect(out: Path, text: str, request: pytest.FixtureRequest) -> str:
    """The expected text in `out`, after rewriting it if asked to."""
    if request.config.getoption("--update-golden"):
        out.write_text(text)
    assert out.exists(), f"{out.name} is missing: run pytest tests/golden --update-golden"
    return out.read_text()


def test_there_are_cases() -> None:
    assert len(_cases()) >= 1


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_golden(case: Path, request: pytest.FixtureRequest) -> None:
    got = render_all(_translations(case))
    out = case.with_name(case.name.replace(".in.yaml", ".out.yaml"))
    expected = _expect(out, yaml.safe_dump(got, sort_keys=False, width=100), request)
    assert yaml.safe_load(expected) == got


@pytest.mark.parametrize("name", NGINX_CASES)
def test_golden_nginx(name: str, request: pytest.FixtureRequest) -> None:
    text = render_nginx(
        _translations(CASES / f"{name}.in.yaml"), host=NGINX_HOST, sockets=NGINX_SOCKETS
    )
    assert _expect(CASES / f"{name}.nginx", text, request) == text


@pytest.mark.parametrize("case", _ingress_cases(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_golden_gateway_api(case: Path, request: pytest.FixtureRequest) -> None:
    text = render_gateway_api(_translations(case))
    out = case.with_name(case.name.replace(".in.yaml", ".gateway-api.yaml"))
    assert _expect(out, text, request) == text


@pytest.mark.parametrize("case", _ingress_cases(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_ingress_round_trip(case: Path) -> None:
    """The printed Gateway API objects serve what the controller serves the Ingresses
    with: translated as any Gateway's, they give the same model (but for the Gateway's
    name and class)."""
    served = _translations(case)
    converted = [doc for doc in yaml.safe_load_all(render_gateway_api(served)) if doc is not None]
    kept = [o for o in _objects(case) if o["kind"] not in ("Ingress", "IngressClass")]
    # what the printed comments ask for: appProtocol h2c where an Ingress spoke gRPC
    h2c = {port for c in served.migration.values() for port in c.h2c_ports}
    for obj in kept:
        if obj["kind"] == "Service":
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            for port in obj["spec"]["ports"]:
                if (key, port["port"]) in h2c:
                    port["appProtocol"] = "kubernetes.io/h2c"
    gateway_class = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": MIGRATION.gateway_class},
        "spec": {"controllerName": SETTINGS.controller_name},
    }
    applied = translate_all(
        Snapshot.from_objects([*kept, *converted, gateway_class]), _settings(case), result=RESULT
    )
    assert served.ingress_classes
    for name, ingress in served.ingress_classes.items():
        migrated = applied.gateways[f"{MIGRATION.namespace}/{name}"]
        assert migrated.load_balancer is not None
        assert ingress.load_balancer is not None
        expected = plain(ingress.load_balancer)
        got = plain(migrated.load_balancer)
        for model in (expected, got):
            del model["gateway"], model["gateway_class"]
        assert got == expected
