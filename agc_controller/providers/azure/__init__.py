"""The azure provider: program Azure Application Gateway v2 through ARM.

Public surface: `AzureProvider` (the `Provider`), `AzureSettings` (process
settings, `AzureSettings.from_env()`), `azure_translate_settings` (what
translation must know about this provider: its capabilities and route kinds),
and the per-Gateway annotations. See docs/azure.md for the mapping.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agc_controller.core.resources import GATEWAY_GROUP
from agc_controller.providers.azure.firewall import (
    BLOCK_STATUS_CODES,
    MATCH_VALUES_MAX,
    RULE_GROUPS,
)
from agc_controller.providers.azure.probes import UNHEALTHY_THRESHOLD_MAX
from agc_controller.providers.azure.settings import (
    APPLICATION_GATEWAY_ANNOTATION,
    DNS_ZONE_ANNOTATION,
    FRONTEND_ANNOTATION,
    RESOURCE_GROUP_ANNOTATION,
    SUBSCRIPTION_ANNOTATION,
    AzureSettings,
)
from agc_controller.translate.capabilities import Capabilities
from agc_controller.translate.settings import (
    CORE_FEATURES,
    DEFAULT_CONTROLLER_NAME,
    TranslateSettings,
)

if TYPE_CHECKING:
    from agc_controller.providers.azure.arm import (
        ArmError,
        ArmRejected,
        ArmTemporaryError,
        OnArmCall,
    )
    from agc_controller.providers.azure.provider import AzureProvider

# imported on first use: the Azure SDK they need takes seconds to import, and the
# pure parts (translation settings, `translate -o arm`) do not need it
_LAZY = {
    "ArmError": "arm",
    "ArmRejected": "arm",
    "ArmTemporaryError": "arm",
    "OnArmCall": "arm",
    "AzureProvider": "provider",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# what Application Gateway v2 can express (docs/azure.md has the table)
AZURE_CAPABILITIES = Capabilities(
    provider="azure",
    header_matches=False,
    query_param_matches=False,
    method_matches=False,
    regex_paths=False,
    weighted_backends=False,
    backend_filters=False,
    mirrors=False,
    cors=False,
    # Application Gateway v2 speaks HTTP/1.1 (or HTTPS) to its backends
    h2c_backends=False,
    route_filters=False,
    retries=False,
    redirect_status_codes=frozenset({301, 302, 303, 307}),
    redirect_prefix_replace=False,
    session_persistence_types=frozenset({"Cookie"}),
    session_persistence_timeouts=False,
    backend_tls_subject_alt_names=False,
    # a RateLimitRule of a WAF policy (WAF_v2): per client address, per minute; nothing
    # counts requests in flight
    rate_limit_periods=frozenset({1, 60}),
    rate_limit_request_keys=False,
    rate_limit_burst=False,
    rate_limit_concurrency=False,
    # address lists as custom rules of a WAF policy (WAF_v2); no credentials at all
    auth_credentials=False,
    auth_trusted_proxies=False,
    # WebApplicationFirewallPolicy: WAF policies associated with path rules and
    # listeners of a WAF_v2 gateway (firewall.py): OWASP CRS 3.2 without paranoia
    # levels or thresholds, Application Gateway's block status codes and limits
    waf_crs_tuning=False,
    waf_block_status_codes=BLOCK_STATUS_CODES,
    waf_match_values_max=MATCH_VALUES_MAX,
    waf_rule_groups=frozenset(RULE_GROUPS),
    # probes: GETs in the backend settings' protocol (Https under a BackendTLSPolicy,
    # never by choice: no useTLS) every whole second or more; down after
    # unhealthyThreshold failures, up again after one success
    health_check_protocols=frozenset({"HTTP"}),
    health_check_healthy_threshold=False,
    health_check_subsecond=False,
    # ARM's bound for a probe's unhealthyThreshold (probes.py)
    health_check_unhealthy_threshold_max=UNHEALTHY_THRESHOLD_MAX,
    passive_health_checks=False,
    # without a policy, the pods' readinessProbe (Application Gateway does not read
    # the EndpointSlices' readiness: its probe decides alone)
    probes_from_readiness=True,
    # Application Gateway v2 balances round robin, and has no slow start or breaker;
    # connection draining is its backend settings' (drainTimeoutInSec: whole seconds)
    load_balancing_strategies=frozenset({"RoundRobin"}),
    slow_start=False,
    circuit_breaker=False,
    connection_draining_subsecond=False,
)


def azure_translate_settings(controller_name: str = DEFAULT_CONTROLLER_NAME) -> TranslateSettings:
    """Translation settings for Gateways programmed on Application Gateway v2."""
    return TranslateSettings(
        controller_name=controller_name,
        supported_features=(CORE_FEATURES - {"GRPCRoute"})
        | {
            "BackendTLSPolicy",
            "HTTPRouteHostRewrite",
            "HTTPRouteSchemeRedirect",
            "HTTPRoutePortRedirect",
            "HTTPRouteResponseHeaderModification",
            # claimed only where the server serves the ListenerSet CRD (manager.py)
            "ListenerSet",
        },
        protocols=frozenset({"HTTP", "HTTPS"}),
        # Application Gateway v2 cannot speak HTTP/2 to backends: no gRPC
        route_kinds=frozenset({(GATEWAY_GROUP, "HTTPRoute")}),
        capabilities=AZURE_CAPABILITIES,
    )


__all__ = [
    "APPLICATION_GATEWAY_ANNOTATION",
    "AZURE_CAPABILITIES",
    "DNS_ZONE_ANNOTATION",
    "FRONTEND_ANNOTATION",
    "RESOURCE_GROUP_ANNOTATION",
    "SUBSCRIPTION_ANNOTATION",
    "ArmError",
    "ArmRejected",
    "ArmTemporaryError",
    "AzureProvider",
    "AzureSettings",
    "OnArmCall",
    "azure_translate_settings",
]
