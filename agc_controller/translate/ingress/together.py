"""What the Ingresses of one class decide together: who holds a path, a host's
certificate, the default backend, a backend's protocol or probe; which canary
shadows what; which hosts pass TLS through; which route names would collide.
In age order (creation time, then namespace/name): the older Ingress wins, the
younger one is told (a note)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from agc_controller.core.keys import namespaced_name
from agc_controller.core.resources import APPGW_GROUP, APPGW_SSL_CERTIFICATE, GATEWAY_GROUP
from agc_controller.translate.ingress.annotations import in_namespace
from agc_controller.translate.ingress.plan import (
    HTTP_LISTENER,
    MAX_NAME,
    GatewayTarget,
    Path,
    PathKey,
    Plan,
    backend_refs,
    base_name,
    port_listener_names,
)
from agc_controller.translate.ingress.values import (
    AGIC,
    Annotations,
    BackendProtocol,
    Canary,
    Note,
)
from agc_controller.translate.snapshot import Obj

K = TypeVar("K", bound=Hashable)


V = TypeVar("V")


def shadowing_canaries(
    plans: Iterable[Plan], owners: Mapping[PathKey, str], notes: dict[str, list[Note]]
) -> dict[str, dict[PathKey, tuple[tuple[tuple[str, Any], ...], Canary]]]:
    """Primary Ingress -> its paths shadowed by a canary -> (canary backend, settings)."""
    found: dict[str, dict[PathKey, tuple[tuple[tuple[str, Any], ...], Canary]]] = {}
    for plan in plans:
        canary = plan.annotations.canary
        if canary is None or plan.annotations.refused:
            # a refused canary shadows nothing: its share stays with the primary
            continue
        for path in plan.paths:
            primary = owners.get(path.key)
            if primary is None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "CanaryWithoutPrimary",
                        f"{path.field}: no Ingress serves host {path.host or '*'} path "
                        f"{path.key[2]} for this canary to shadow",
                    )
                )
                continue
            taken = found.setdefault(primary, {})
            if path.key in taken or path.backend is None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "PathConflict",
                        f"{path.field}: an older canary already shadows host "
                        f"{path.host or '*'} path {path.key[2]}",
                    )
                )
                continue
            taken[path.key] = (path.backend, canary)
    return found


def beyond_the_provider(
    plans: Iterable[Plan], target: GatewayTarget, notes: defaultdict[str, list[Note]]
) -> frozenset[str]:
    """The Ingresses whose access guards the provider cannot honour: not served. What
    else it cannot honour is told (and the Ingress served without it)."""
    unserved = set()
    for plan in plans:
        if plan.annotations.concurrency is not None and not target.rate_limit_concurrency:
            notes[plan.key].append(
                Note(
                    "Warning",
                    "UnsupportedAnnotation",
                    "nginx.ingress.kubernetes.io/limit-connections: this data plane counts no "
                    "requests in flight; ignored",
                )
            )
        if plan.annotations.waf_policy_id and not target.waf_policy_reference:
            unserved.add(plan.key)
            notes[plan.key].append(
                Note(
                    "Warning",
                    "UnsupportedAnnotation",
                    "appgw.ingress.kubernetes.io/waf-policy-for-path: a WAF policy by id is "
                    "Application Gateway's; this data plane cannot apply it, so the Ingress is "
                    "not served (its paths answer 500) rather than served unprotected",
                )
            )
    return frozenset(unserved)


def _oldest_claims(
    claims: Iterable[tuple[str, K, V]],
    notes: defaultdict[str, list[Note]],
    conflict: Callable[[K, str], Note],
) -> dict[K, tuple[str, V]]:
    """Key -> (the Ingress holding it, its value), for claims (Ingress, key, value) in
    age order: the first claim of a key holds it; a later, different one is told
    `conflict(key, holder)`."""
    found: dict[K, tuple[str, V]] = {}
    for ingress, key, value in claims:
        held = found.setdefault(key, (ingress, value))
        if held[1] != value:
            notes[ingress].append(conflict(key, held[0]))
    return found


@attrs.frozen
class ServiceSetting:
    """A setting Ingress annotations give the Services they send to (one per Service:
    a policy targeting it), and how a conflict over it is told."""

    # the policy block the annotations give, if they give one
    value_of: Callable[[Annotations], Mapping[str, object] | None]
    reason: str  # the conflict Event's reason
    # the conflict Event says "Service <s> <verb> as the older Ingress <i> says; this
    # Ingress's <annotations> not used for it" (`annotations` ends with its own verb)
    verb: str
    annotations: str


# HealthCheckPolicy `default` blocks, from AGIC's health-probe annotations
HEALTH_PROBE = ServiceSetting(
    value_of=lambda a: a.health_probe,
    reason="HealthProbeConflict",
    verb="is probed",
    annotations="health-probe annotations are",
)
# BackendLoadBalancingPolicy `connectionDraining` blocks, from AGIC's connection-draining
CONNECTION_DRAINING = ServiceSetting(
    value_of=lambda a: a.connection_draining,
    reason="ConnectionDrainingConflict",
    verb="drains",
    annotations="connection-draining is",
)


def per_service(
    setting: ServiceSetting, plans: Iterable[Plan], notes: defaultdict[str, list[Note]]
) -> dict[str, tuple[str, Mapping[str, object]]]:
    """Service -> (the Ingress deciding it, its block of `setting`), from the oldest
    Ingress giving one and sending to it."""
    return _oldest_claims(
        (
            (plan.key, service, value)
            for plan in plans
            if (value := setting.value_of(plan.annotations)) is not None
            and not plan.annotations.refused
            for service in sorted({s for s, _ in backend_refs(plan)})
        ),
        notes,
        lambda service, holder: Note(
            "Warning",
            setting.reason,
            f"Service {service} {setting.verb} as the older Ingress {holder} says; this "
            f"Ingress's {setting.annotations} not used for it",
        ),
    )


def backend_protocols(
    plans: Iterable[Plan], notes: defaultdict[str, list[Note]]
) -> dict[tuple[str, int], tuple[str, BackendProtocol]]:
    """(Service, port) -> (the Ingress deciding it, how it is spoken to), for the
    backends of Ingresses with backend-protocol: the oldest decides a Service port."""
    claims = []
    for plan in plans:
        protocol = plan.annotations.backend_protocol
        if protocol is None or plan.annotations.refused:
            continue
        namespace = plan.ingress["metadata"].get("namespace", "")
        if protocol.ca_secret and not in_namespace(protocol.ca_secret, namespace).startswith(
            f"{namespace}/"
        ):
            notes[plan.key].append(
                Note(
                    "Warning",
                    "InvalidAnnotation",
                    f"proxy-ssl-secret {protocol.ca_secret}: a backend's CA must be in the "
                    "Service's namespace (a BackendTLSPolicy's CA references are local); "
                    "backend-protocol is not used",
                )
            )
            continue
        claims += [(plan.key, key, protocol) for key in sorted(backend_refs(plan))]
    return _oldest_claims(
        claims,
        notes,
        lambda key, holder: Note(
            "Warning",
            "BackendProtocolConflict",
            f"Service {key[0]} port {key[1]} is spoken to as the older Ingress {holder} "
            "says; this Ingress's backend-protocol is not used for it",
        ),
    )


@attrs.frozen
class Passthrough:
    """One host whose TLS goes through to a backend (ssl-passthrough)."""

    origin: str  # the Ingress
    namespace: str
    route_name: str
    backend: tuple[tuple[str, Any], ...]


def passthrough_hosts(
    plans: Iterable[Plan], notes: defaultdict[str, list[Note]]
) -> dict[str, Passthrough]:
    """Host -> where its TLS goes, for the oldest ssl-passthrough Ingress naming it: the
    backend of its path "/" (or its first path)."""
    found: dict[str, Passthrough] = {}
    for plan in plans:
        annotations = plan.annotations
        if not annotations.ssl_passthrough or annotations.refused or annotations.canary:
            continue
        by_host: dict[str, list[Path]] = {}
        for path in plan.paths:
            by_host.setdefault(path.host, []).append(path)
        for host, paths in sorted(by_host.items()):
            root = next((p for p in paths if dict(p.match)["value"] == "/"), paths[0])
            if not host or root.backend is None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "InvalidAnnotation",
                        f"{root.field}: ssl-passthrough needs a host and a Service backend",
                    )
                )
                continue
            held = found.get(host)
            if held is not None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "PathConflict",
                        f"host {host}: its TLS already goes through to the older Ingress "
                        f"{held.origin}",
                    )
                )
                continue
            found[host] = Passthrough(
                origin=plan.key,
                namespace=plan.ingress["metadata"].get("namespace", ""),
                route_name=f"{base_name(plan, host)[: MAX_NAME - 12]}-passthrough",
                backend=root.backend,
            )
    return found


@attrs.frozen
class TlsCertificate:
    """A TLS host's certificate: a Secret's, or (AGIC's appgw-ssl-certificate) one
    already on the Application Gateway."""

    namespace: str  # the Secret's; "" for the Application Gateway's
    name: str

    def ref(self) -> Obj:
        """Its listener certificateRef."""
        if not self.namespace:
            return {"group": APPGW_GROUP, "kind": APPGW_SSL_CERTIFICATE, "name": self.name}
        return {"kind": "Secret", "namespace": self.namespace, "name": self.name}

    def __str__(self) -> str:
        if not self.namespace:
            return f"Application Gateway certificate {self.name}"
        return f"Secret {self.namespace}/{self.name}"


def tls_certificates(
    plans: Iterable[Plan],
    target: GatewayTarget,
    notes: dict[str, list[Note]],
    passthrough: Mapping[str, Passthrough],
) -> tuple[dict[str, TlsCertificate], dict[str, str], dict[str, Obj]]:
    """TLS host ("" every host) -> its certificate; TLS host -> the Ingress giving it;
    and the ReferenceGrants the Gateway needs to use them. A host whose TLS goes
    through to a backend has no certificate here. An Ingress's appgw-ssl-certificate
    comes before its TLS entries, for all its hosts."""
    certificates: dict[str, TlsCertificate] = {}
    origins: dict[str, str] = {}  # host -> the Ingress giving its certificate
    for plan in plans:
        if plan.annotations.canary is not None:
            continue
        namespace = plan.ingress["metadata"].get("namespace", "")
        entries: list[tuple[str, tuple[str, ...], TlsCertificate]] = []
        if (on_gateway := plan.annotations.gateway_certificate) is not None:
            entries.append(
                (
                    f"{AGIC}appgw-ssl-certificate",
                    tuple(sorted(plan.hosts)),
                    TlsCertificate("", on_gateway),
                )
            )
        for i, (hosts, secret) in enumerate(plan.tls):
            if secret is None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "TLSSecretMissing",
                        f"spec.tls[{i}] names no secretName: its hosts are not served over HTTPS",
                    )
                )
                continue
            entries.append((f"spec.tls[{i}]", hosts or ("",), TlsCertificate(namespace, secret)))
        for field, hosts, certificate in entries:
            for host in hosts:
                if host in passthrough:
                    notes[plan.key].append(
                        Note(
                            "Warning",
                            "TLSConflict",
                            f"{field}: host {host}'s TLS goes through to a backend "
                            f"(ssl-passthrough of {passthrough[host].origin}); {certificate} "
                            "is not used",
                        )
                    )
                    continue
                held = certificates.setdefault(host, certificate)
                origin = origins.setdefault(host, plan.key)
                if held != certificate:
                    notes[plan.key].append(
                        Note(
                            "Warning",
                            "TLSConflict",
                            f"{field}: host {host or '*'} already has {held} (from Ingress "
                            f"{origin}); {certificate} is not used",
                        )
                    )
    by_namespace: dict[str, set[str]] = {}
    for certificate in certificates.values():
        if certificate.namespace and certificate.namespace != target.namespace:
            by_namespace.setdefault(certificate.namespace, set()).add(certificate.name)
    grants = {
        namespaced_name(namespace, target.name): {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": target.name, "namespace": namespace},
            "spec": {
                "from": [
                    {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": target.namespace}
                ],
                "to": [{"group": "", "kind": "Secret", "name": s} for s in sorted(secrets)],
            },
        }
        for namespace, secrets in sorted(by_namespace.items())
    }
    return certificates, origins, grants


def default_backend_owner(plans: Iterable[Plan], notes: dict[str, list[Note]]) -> str | None:
    owner: str | None = None
    for plan in plans:
        if plan.default_backend is None or plan.annotations.canary is not None:
            continue
        if owner is None:
            owner = plan.key
            continue
        notes[plan.key].append(
            Note(
                "Warning",
                "DefaultBackendConflict",
                f"spec.defaultBackend is not used: the older Ingress {owner} gives the "
                "class's default backend",
            )
        )
    return owner


def renamed_routes(plans: Iterable[Plan]) -> dict[str, dict[str, str]]:
    """Route names that two Ingresses would share get a digest of the Ingress and host."""
    claimed: dict[tuple[str, str], str] = {}
    renamed: dict[str, dict[str, str]] = {}
    for plan in plans:
        for name in plan.route_names:
            base = name[1]
            owner = claimed.setdefault(name, plan.key)
            if owner != plan.key or len(base) > MAX_NAME:
                digest = hashlib.sha256(f"{plan.key}|{base}".encode()).hexdigest()[:10]
                renamed.setdefault(plan.key, {})[base] = f"{base[: MAX_NAME - 11]}-{digest}"
    return renamed


@attrs.frozen
class PortListener:
    """A listener on a frontend port an Ingress asks for."""

    name: str
    port: int
    protocol: str  # HTTP or HTTPS
    hostname: str  # "" every host
    certificate: TlsCertificate | None  # HTTPS


@attrs.frozen
class FrontendPorts:
    """Listeners on ports Ingresses ask for instead of 80/443 (AGIC's
    override-frontend-port), and which listeners each Ingress's routes take."""

    listeners: tuple[PortListener, ...] = ()

    def parents(
        self, plan: Plan, https: tuple[tuple[str, str], ...]
    ) -> tuple[tuple[str, str], ...] | None:
        """The listeners (name, hostname) `plan`'s routes attach to: its own port's, or,
        once some Ingress has a port of its own, the usual ones by name (a route naming
        no listener would take every port's); None: every listener, by naming none."""
        if not self.listeners:
            return None
        port = plan.annotations.frontend_port
        if port is None:
            return ((HTTP_LISTENER, ""), *https)
        return tuple((ls.name, ls.hostname) for ls in self.listeners if ls.port == port)


def frontend_ports(
    plans: Iterable[Plan], certificates: Mapping[str, TlsCertificate]
) -> FrontendPorts:
    """The listeners of the Ingresses with a frontend port of their own: HTTPS on it for
    their hosts with a certificate, HTTP on it for the others."""
    found: dict[str, PortListener] = {}
    for plan in plans:
        port = plan.annotations.frontend_port
        if port is None or plan.annotations.refused:
            continue
        for host in sorted(plan.hosts):
            http, https = port_listener_names(port, host)
            certificate = certificates.get(host) if host else None
            if certificate is not None:
                found.setdefault(https, PortListener(https, port, "HTTPS", host, certificate))
            else:
                found.setdefault(http, PortListener(http, port, "HTTP", "", None))
    return FrontendPorts(listeners=tuple(found[name] for name in sorted(found)))
