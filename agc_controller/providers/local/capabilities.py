"""What the local NGINX data plane can program: the features its GatewayClass
claims and the capabilities translation checks routes against (the azure
provider's are in providers/azure)."""

from __future__ import annotations

import attrs

from agc_controller.core.resources import GATEWAY_GROUP
from agc_controller.providers.local.dynamic import RETRY_ATTEMPTS_MAX
from agc_controller.translate import TranslateSettings
from agc_controller.translate.capabilities import Capabilities
from agc_controller.translate.settings import CORE_FEATURES

# what the local NGINX data plane implements, each exercised by tests/e2e
LOCAL_FEATURES = CORE_FEATURES | frozenset(
    {
        "BackendTLSPolicy",
        "GatewayAddressEmpty",
        "GatewayBackendClientCertificate",
        "GatewayFrontendClientCertificateValidation",
        "GatewayFrontendClientCertificateValidationInsecureFallback",
        "GatewayHTTPListenerIsolation",
        "GatewayHTTPSListenerDetectMisdirectedRequests",
        "GatewayPort8080",
        "GatewayStaticAddresses",
        "HTTPRoute303RedirectStatusCode",
        "HTTPRoute307RedirectStatusCode",
        "HTTPRoute308RedirectStatusCode",
        "HTTPRouteBackendProtocolH2C",
        "HTTPRouteBackendProtocolWebSocket",
        "HTTPRouteBackendRequestHeaderModification",
        "HTTPRouteBackendTimeout",
        "HTTPRouteCORS",
        "HTTPRouteDestinationPortMatching",
        "HTTPRouteHostRewrite",
        "HTTPRouteMethodMatching",
        "HTTPRouteNamedRouteRule",
        "HTTPRouteParentRefPort",
        "HTTPRoutePathRedirect",
        "HTTPRoutePathRewrite",
        "HTTPRoutePortRedirect",
        "HTTPRouteQueryParamMatching",
        "HTTPRouteRequestMirror",
        "HTTPRouteRequestMultipleMirrors",
        "HTTPRouteRequestPercentageMirror",
        "HTTPRouteRequestTimeout",
        "HTTPRouteResponseHeaderModification",
        "HTTPRouteRetry",
        "HTTPRouteRetryBackendTimeout",
        "HTTPRouteRetryConnectionError",
        "HTTPRouteSchemeRedirect",
        "TCPRoute",
        "TLSRoute",
        "TLSRouteModeMixed",
        "TLSRouteModeTerminate",
        "UDPRoute",
        # claimed only where the server serves the ListenerSet CRD (manager.py)
        "ListenerSet",
    }
)


# The data-plane Deployment per Gateway (--local-dataplane deployment) is made of
# Kubernetes objects, which carry spec.infrastructure's labels and annotations.
# Its spec.addresses are its Service's external IPs, from ranges an administrator
# allows (dataplane/addresses.py): with none allowed, it cannot claim
# GatewayStaticAddresses.
DEPLOYMENT_FEATURES = LOCAL_FEATURES | {"GatewayInfrastructurePropagation"}

# NGINX checks an upstream certificate against the name it sends as SNI, and
# only that: it cannot check other subjectAltNames. Retries on status codes are
# internal redirects, and NGINX allows a request ten (dynamic.RETRY_ATTEMPTS_MAX).
LOCAL_CAPABILITIES = Capabilities(
    backend_tls_subject_alt_names=False,
    retry_attempts_max=RETRY_ATTEMPTS_MAX,
    # the firewall is ModSecurity with the rules a policy describes; a WAF policy of
    # Application Gateway's is Azure's alone
    waf_policy_reference=False,
    # an endpoint leaving a backend only stops being picked (lua/agc/balancer.lua):
    # NGINX cannot end a proxied request from outside it, so requests in flight to
    # it always finish, whatever connectionDraining says (docs/policies.md)
    connection_draining_cutoff=False,
    # objects on an Application Gateway (graph/appgw.py) exist only there
    application_gateway_children=False,
    key_vault_certificates=False,
    # the data plane balances over the EndpointSlices' ready endpoints, and kubelet
    # runs each pod's readinessProbe to decide them: probing it again adds nothing
    probes_from_readiness=False,
)


def local_translate_settings(
    controller_name: str,
    *,
    mesh: bool = False,
    deployment: bool = False,
    static_addresses: bool = False,
) -> TranslateSettings:
    """Translation settings for Gateways served by the local NGINX data plane;
    `mesh`: Services in Istio-injected namespaces are reached over mesh mTLS;
    `deployment`: each Gateway's data plane is a Deployment (DEPLOYMENT_FEATURES),
    which serves spec.addresses only with `static_addresses` (ranges allowed)."""
    features = LOCAL_FEATURES
    if deployment:
        features = DEPLOYMENT_FEATURES
        if not static_addresses:
            features -= {"GatewayStaticAddresses"}
    return TranslateSettings(
        controller_name=controller_name,
        supported_features=features,
        protocols=frozenset({"HTTP", "HTTPS", "TLS", "TCP", "UDP"}),
        tls_modes=frozenset({"Passthrough", "Terminate"}),
        route_kinds=frozenset(
            (GATEWAY_GROUP, kind)
            for kind in ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")
        ),
        capabilities=attrs.evolve(LOCAL_CAPABILITIES, mesh=mesh),
    )
