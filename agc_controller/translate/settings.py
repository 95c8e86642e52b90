"""What translation needs to know about the controller and its provider."""

from __future__ import annotations

import attrs

from agc_controller.core.resources import GATEWAY_GROUP
from agc_controller.translate.capabilities import FULL, Capabilities

DEFAULT_CONTROLLER_NAME = "agc-controller.io/gateway-controller"
# the spec.controller of IngressClasses whose Ingresses we serve
DEFAULT_INGRESS_CONTROLLER = "agc-controller.io/ingress-controller"

# Features (sigs.k8s.io/gateway-api/pkg/features names) that translation and the
# local data plane implement; a provider may narrow them (see providers).
CORE_FEATURES = frozenset({"Gateway", "HTTPRoute", "ReferenceGrant", "GRPCRoute"})

# Features whose field only the experimental channel's CRDs serve: (kind, the
# field's path under spec) -> features. With the standard CRDs the API server
# drops the field, so a GatewayClass must not claim them.
FIELD_FEATURES: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {
    ("HTTPRoute", ("rules", "retry")): frozenset(
        {"HTTPRouteRetry", "HTTPRouteRetryBackendTimeout", "HTTPRouteRetryConnectionError"}
    ),
}


# Features whose resource the server may not serve (a bundle older than v1.5 has no
# ListenerSet): (group/version, plural) -> features. Without the CRD there is nothing
# to use them with, so a GatewayClass must not claim them.
RESOURCE_FEATURES: dict[tuple[str, str], frozenset[str]] = {
    (f"{GATEWAY_GROUP}/v1", "listenersets"): frozenset({"ListenerSet"}),
}


@attrs.frozen
class TranslateSettings:
    controller_name: str = DEFAULT_CONTROLLER_NAME
    ingress_controller: str = DEFAULT_INGRESS_CONTROLLER
    # what the provider can program; reported in GatewayClass status.supportedFeatures
    supported_features: frozenset[str] = CORE_FEATURES
    # listener protocols the provider serves
    protocols: frozenset[str] = frozenset({"HTTP", "HTTPS"})
    # tls.mode values the provider serves on TLS listeners (Passthrough, Terminate)
    tls_modes: frozenset[str] = frozenset({"Passthrough"})
    # route kinds we reconcile, as (group, kind)
    route_kinds: frozenset[tuple[str, str]] = frozenset(
        {(GATEWAY_GROUP, "HTTPRoute"), (GATEWAY_GROUP, "GRPCRoute")}
    )
    # route features the provider can program; rules using others are dropped
    capabilities: Capabilities = FULL
