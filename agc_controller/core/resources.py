"""The API resources the controller reads or writes, and their REST paths."""

from __future__ import annotations

import attrs

GATEWAY_GROUP = "gateway.networking.k8s.io"
# our own kinds (crds/)
POLICY_GROUP = "agc-controller.io"
# objects already on an Application Gateway (made outside the controller), named by
# Gateway API references of these kinds: certificateRefs, BackendTLSPolicy
# caCertificateRefs, ExtensionRef filters (translate/graph/appgw.py)
APPGW_GROUP = "azure.agc-controller.io"
APPGW_SSL_CERTIFICATE = "SslCertificate"
APPGW_TRUSTED_ROOT_CERTIFICATE = "TrustedRootCertificate"
APPGW_REWRITE_RULE_SET = "RewriteRuleSet"
# a listener's tls.options key: the Key Vault secret of its certificate (azure)
KEY_VAULT_SECRET_OPTION = "azure.agc-controller.io/key-vault-secret-id"
# the Secret type holding an AuthPolicy's API keys (client name -> key); informers
# keep these Secrets' data whole
API_KEY_SECRET_TYPE = "agc-controller.io/api-key"


@attrs.frozen
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        """`/api/v1/services`, or the namespaced form when `namespace` is given."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if namespace and self.namespaced else ""
        return f"{base}{scope}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(namespace)}/{name}"


GATEWAY_CLASS = Resource(GATEWAY_GROUP, "v1", "gatewayclasses", "GatewayClass", namespaced=False)
GATEWAY = Resource(GATEWAY_GROUP, "v1", "gateways", "Gateway", namespaced=True)
HTTP_ROUTE = Resource(GATEWAY_GROUP, "v1", "httproutes", "HTTPRoute", namespaced=True)
GRPC_ROUTE = Resource(GATEWAY_GROUP, "v1", "grpcroutes", "GRPCRoute", namespaced=True)
TLS_ROUTE = Resource(GATEWAY_GROUP, "v1", "tlsroutes", "TLSRoute", namespaced=True)
TCP_ROUTE = Resource(GATEWAY_GROUP, "v1", "tcproutes", "TCPRoute", namespaced=True)
UDP_ROUTE = Resource(GATEWAY_GROUP, "v1", "udproutes", "UDPRoute", namespaced=True)
LISTENER_SET = Resource(GATEWAY_GROUP, "v1", "listenersets", "ListenerSet", namespaced=True)
BACKEND_TLS_POLICY = Resource(
    GATEWAY_GROUP, "v1", "backendtlspolicies", "BackendTLSPolicy", namespaced=True
)
RATE_LIMIT_POLICY = Resource(
    POLICY_GROUP, "v1alpha1", "ratelimitpolicies", "RateLimitPolicy", namespaced=True
)
HEALTH_CHECK_POLICY = Resource(
    POLICY_GROUP, "v1alpha1", "healthcheckpolicies", "HealthCheckPolicy", namespaced=True
)
LOAD_BALANCING_POLICY = Resource(
    POLICY_GROUP,
    "v1alpha1",
    "backendloadbalancingpolicies",
    "BackendLoadBalancingPolicy",
    namespaced=True,
)
AUTH_POLICY = Resource(POLICY_GROUP, "v1alpha1", "authpolicies", "AuthPolicy", namespaced=True)
WAF_POLICY = Resource(
    POLICY_GROUP,
    "v1alpha1",
    "webapplicationfirewallpolicies",
    "WebApplicationFirewallPolicy",
    namespaced=True,
)
# our ExtensionRef filter for HTTPRoute rules (a regex path rewrite)
HTTP_ROUTE_FILTER = Resource(
    POLICY_GROUP, "v1alpha1", "httproutefilters", "HTTPRouteFilter", namespaced=True
)
REFERENCE_GRANT = Resource(
    GATEWAY_GROUP, "v1", "referencegrants", "ReferenceGrant", namespaced=True
)
SERVICE = Resource("", "v1", "services", "Service", namespaced=True)
ENDPOINT_SLICE = Resource(
    "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced=True
)
SECRET = Resource("", "v1", "secrets", "Secret", namespaced=True)
CONFIG_MAP = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True)
NAMESPACE = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
# watched with mesh mTLS on, and only pods with an Istio sidecar (MESH_POD_SELECTOR):
# the service account a mesh endpoint must prove it runs as; all of them where
# probes come from the pods' readinessProbes (the azure provider)
POD = Resource("", "v1", "pods", "Pod", namespaced=True)
# the label Istio's injector puts on the pods it gives a sidecar
MESH_POD_SELECTOR = "security.istio.io/tlsMode=istio"
INGRESS_CLASS = Resource(
    "networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False
)
INGRESS = Resource("networking.k8s.io", "v1", "ingresses", "Ingress", namespaced=True)
LEASE = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
EVENT = Resource("events.k8s.io", "v1", "events", "Event", namespaced=True)

# every resource above, by kind (for applying manifests of known kinds)
BY_KIND = {
    res.kind: res
    for res in (
        GATEWAY_CLASS,
        GATEWAY,
        HTTP_ROUTE,
        GRPC_ROUTE,
        TLS_ROUTE,
        TCP_ROUTE,
        UDP_ROUTE,
        LISTENER_SET,
        BACKEND_TLS_POLICY,
        RATE_LIMIT_POLICY,
        HEALTH_CHECK_POLICY,
        LOAD_BALANCING_POLICY,
        AUTH_POLICY,
        WAF_POLICY,
        HTTP_ROUTE_FILTER,
        REFERENCE_GRANT,
        SERVICE,
        ENDPOINT_SLICE,
        SECRET,
        CONFIG_MAP,
        NAMESPACE,
        INGRESS_CLASS,
        INGRESS,
        LEASE,
        EVENT,
    )
}
