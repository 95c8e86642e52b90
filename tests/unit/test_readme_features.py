"""The README's feature table against the providers' own tables (their translation
settings and `Capabilities`), so that the two cannot drift apart again.

Each row the capabilities decide names what it claims, as checks on a provider's
settings. A provider's cell must say "done" when every check holds, "reported
unsupported" when none does, and something in between (what is and is not
there) otherwise. Every row is either checked here or listed as decided by
something else, and every capability flag is claimed by some row: a new row or
a new flag needs a line here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from agc_controller.core.resources import GATEWAY_GROUP
from agc_controller.providers.azure import azure_translate_settings
from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.translate import TranslateSettings
from agc_controller.translate.capabilities import Capabilities

README = Path(__file__).resolve().parents[2] / "README.md"

Check = Callable[[TranslateSettings], bool]


def flag(name: str) -> Check:
    return lambda s: bool(getattr(s.capabilities, name))


def feature(name: str) -> Check:
    return lambda s: name in s.supported_features


def always(_: TranslateSettings) -> bool:
    return True


# row (the start of its first cell) -> what it claims
CHECKED: dict[str, tuple[Check, ...]] = {
    "Host, path": (
        always,  # hostnames and Exact / PathPrefix paths
        flag("header_matches"),
        flag("query_param_matches"),
        flag("method_matches"),
        flag("regex_paths"),
    ),
    "Request/response header modifiers": (
        always,  # set and remove
        flag("header_add"),
        flag("backend_filters"),
        feature("HTTPRouteResponseHeaderModification"),
    ),
    "Redirects": (
        always,  # scheme, host, port, full-path redirects; 301-307
        lambda s: 308 in s.capabilities.redirect_status_codes,
        flag("redirect_prefix_replace"),
        flag("rewrite_prefix_replace"),
        flag("route_filters"),  # our HTTPRouteFilter (ExtensionRef): its regex rewrite
    ),
    "Weighted traffic splitting": (always, flag("weighted_backends")),
    "Request mirroring": (flag("mirrors"),),
    "CORS": (flag("cors"),),
    "Retries": (flag("retries"),),
    "Cookie session persistence": (
        lambda s: "Cookie" in s.capabilities.session_persistence_types,
        flag("session_persistence_timeouts"),
    ),
    "Backend TLS": (feature("BackendTLSPolicy"), flag("backend_tls_subject_alt_names")),
    "GRPCRoute": (
        lambda s: (GATEWAY_GROUP, "GRPCRoute") in s.route_kinds,
        flag("h2c_backends"),  # an HTTPRoute's h2c (gRPC) backends
    ),
    "TLSRoute": (
        lambda s: (GATEWAY_GROUP, "TLSRoute") in s.route_kinds and "TLS" in s.protocols,
        lambda s: s.tls_modes >= {"Passthrough", "Terminate"},
        feature("TLSRouteModeMixed"),
    ),
    "TCPRoute and UDPRoute": (
        lambda s: (GATEWAY_GROUP, "TCPRoute") in s.route_kinds and "TCP" in s.protocols,
        lambda s: (GATEWAY_GROUP, "UDPRoute") in s.route_kinds and "UDP" in s.protocols,
    ),
    "ListenerSet": (feature("ListenerSet"),),
    "Rate limiting": (
        flag("rate_limits"),
        lambda s: s.capabilities.rate_limit_periods >= {1, 60, 3600},
        flag("rate_limit_request_keys"),
        flag("rate_limit_burst"),
        flag("rate_limit_concurrency"),
    ),
    "Access control": (flag("auth"), flag("auth_credentials"), flag("auth_trusted_proxies")),
    "Web application firewall": (
        flag("waf_rules"),
        flag("waf_policy_reference"),
        flag("waf_crs_tuning"),
    ),
    "Health checks": (
        lambda s: "HTTP" in s.capabilities.health_check_protocols,
        lambda s: {"HTTPS", "TCP", "GRPC"} <= s.capabilities.health_check_protocols,
        flag("health_check_healthy_threshold"),
        flag("health_check_subsecond"),
        flag("passive_health_checks"),
        flag("probes_from_readiness"),  # without a policy, the pods' readinessProbe
    ),
    "Application Gateway objects": (
        flag("application_gateway_children"),
        flag("key_vault_certificates"),
    ),
    "Load balancing": (
        lambda s: (
            s.capabilities.load_balancing_strategies
            >= {"RoundRobin", "LeastRequest", "Random", "ConsistentHash"}
        ),
        flag("slow_start"),
        flag("circuit_breaker"),
        flag("connection_draining_subsecond"),
        flag("connection_draining_cutoff"),
    ),
}
# rows decided by the providers' code rather than by their tables
NOT_CHECKED = (
    "GatewayClass, Gateway and listener status",
    "Request and backend timeouts",
    "TLS termination",
    "Frontend mTLS",
    "WebSockets",
    "HA:",
    "ReferenceGrant",
    "Route, endpoint, weight and certificate changes",
    "Leader election",
    "`agc-controller translate`",
    "Gateway API v1.6.1 conformance",
    "In-cluster data plane",
    "Observability",
    "Ingress (",
    "Istio mTLS",
    "Azure DNS records",
)
# flags every row leaves to others: the provider's name, a number, a user's opt-in
UNCLAIMED = {
    "provider",
    "mesh",
    "retry_attempts_max",
    "session_persistence_types",
    "redirect_status_codes",
    "health_check_protocols",
    "health_check_unhealthy_threshold_max",
    "load_balancing_strategies",
    "rate_limit_periods",
    "waf_block_status_codes",
    "waf_match_values_max",
    "waf_rule_groups",
}

PROVIDERS = {
    "local": local_translate_settings("x"),
    "azure": azure_translate_settings("x"),
}


def table() -> dict[str, dict[str, str]]:
    """The README's feature table: first cell -> provider -> cell."""
    text = README.read_text()
    section = text.split("## Supported features", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[1].startswith("local"), header
    assert header[2].startswith("azure"), header
    out = {}
    for line in rows[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        out[cells[0]] = {"local": cells[1], "azure": cells[2]}
    return out


def row(name: str) -> dict[str, str]:
    found = [cells for first, cells in table().items() if first.startswith(name)]
    assert len(found) == 1, f"the README has {len(found)} feature rows starting {name!r}"
    return found[0]


def test_every_row_is_checked_or_said_to_be_decided_elsewhere() -> None:
    prefixes = (*CHECKED, *NOT_CHECKED)
    for first in table():
        assert any(first.startswith(p) for p in prefixes), f"README row not covered: {first!r}"


def test_every_capability_is_claimed_by_a_row() -> None:
    source = Path(__file__).read_text()
    for field in attrs.fields(Capabilities):
        if field.name not in UNCLAIMED:
            assert f'flag("{field.name}")' in source, f"no README row claims {field.name}"


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("name", sorted(CHECKED))
def test_a_cell_says_what_the_provider_does(name: str, provider: str) -> None:
    held = [check(PROVIDERS[provider]) for check in CHECKED[name]]
    cell = row(name)[provider]
    if all(held):
        assert cell == "done", (
            f"{name} on {provider}: everything is supported, the README says {cell!r}"
        )
    elif not any(held):
        assert cell == "reported unsupported", (
            f"{name} on {provider}: nothing is supported, the README says {cell!r}"
        )
    else:
        assert cell not in ("done", "reported unsupported", "—"), (
            f"{name} on {provider}: only part is supported, the README says {cell!r}"
        )
