"""One Ingress read on its own (everything that does not depend on the other
Ingresses of its class), and the names the conversion gives what it makes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import attrs

from agc_controller.core.keys import namespaced_name
from agc_controller.translate.ingress.annotations import parse_annotations
from agc_controller.translate.ingress.values import Annotations, Note, capture_template
from agc_controller.translate.settings import TranslateSettings
from agc_controller.translate.snapshot import Obj

# a route name longer than this gets a digest instead of its tail
MAX_NAME = 253

HTTP_PORT = 80


HTTPS_PORT = 443


HTTP_LISTENER = "http"


@attrs.frozen
class GatewayTarget:
    """Where the class's Gateway lives and whose it is."""

    namespace: str
    name: str
    gateway_class: str
    controller_name: str
    # the redirect status codes the provider serves: an HTTPS redirect it cannot send
    # as 308 goes out as 301 (as AGIC's does)
    redirect_codes: frozenset[int] = frozenset({301, 302, 303, 307, 308})
    # whether the provider takes a WAF policy of its own by id (Application Gateway's)
    waf_policy_reference: bool = True
    # the Gateway's annotations: the IngressClass's provider settings (e.g. which
    # Application Gateway, which frontend), as a Gateway's annotations carry them
    annotations: tuple[tuple[str, str], ...] = ()
    # whether the provider's rate limits take a burst, and count requests in flight
    # (Application Gateway's do neither)
    rate_limit_burst: bool = True
    rate_limit_concurrency: bool = True

    @classmethod
    def serving(
        cls,
        settings: TranslateSettings,
        *,
        namespace: str,
        name: str,
        gateway_class: str,
        annotations: tuple[tuple[str, str], ...],
    ) -> GatewayTarget:
        """The target of the provider `settings` describe (what its capabilities allow)."""
        capabilities = settings.capabilities
        return cls(
            namespace=namespace,
            name=name,
            gateway_class=gateway_class,
            controller_name=settings.controller_name,
            redirect_codes=capabilities.redirect_status_codes,
            waf_policy_reference=capabilities.waf_policy_reference,
            annotations=annotations,
            rate_limit_burst=capabilities.rate_limit_burst,
            rate_limit_concurrency=capabilities.rate_limit_concurrency,
        )


# (host, path type, path value): a path as Ingresses merge them
PathKey = tuple[str, str, str]


@attrs.frozen
class Path:
    host: str  # "" for every host
    match: tuple[tuple[str, str], ...]  # the Gateway API path match, as items
    backend: tuple[tuple[str, Any], ...] | None  # the backendRef, as items; None: none
    field: str  # where it is in the Ingress, for messages
    # the HTTPRouteFilter of its rules (a capture rewrite, a body limit), by name
    filter_name: str | None = None
    # (host, path type, path value): what two Ingresses' paths are compared by
    key: PathKey = attrs.field(init=False)

    @key.default
    def _key(self) -> PathKey:
        match = dict(self.match)
        return (self.host, match["type"], match["value"])


@attrs.frozen(eq=False)
class Plan:
    """One Ingress read on its own: everything that does not depend on the others."""

    key: str
    ingress: Obj
    order: tuple[str, str]  # creation time, store key: older first
    annotations: Annotations
    notes: tuple[Note, ...]
    paths: tuple[Path, ...]
    default_backend: tuple[tuple[str, Any], ...] | None
    # (hosts, Secret name or None); hosts empty: every host
    tls: tuple[tuple[tuple[str, ...], str | None], ...]
    # the Services read (by port name), as they were: reused while the same objects
    services: tuple[tuple[str, Obj | None], ...]
    # custom-http-errors: the Service (name, port) answering them, if it resolved
    error_backend: tuple[str, int] | None = None
    # (namespace, name) of each route it makes, before collisions are settled
    route_names: tuple[tuple[str, str], ...] = attrs.field(init=False)

    @route_names.default
    def _route_names(self) -> tuple[tuple[str, str], ...]:
        namespace = self.ingress["metadata"].get("namespace", "")
        bases = {base_name(self, path.host) for path in self.paths}
        if self.default_backend is not None:
            bases.add(default_name(self))
        return tuple((namespace, base) for base in sorted(bases))

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(path.host for path in self.paths)


def plan_ingress(key: str, ingress: Obj, services: Mapping[str, Obj]) -> Plan:
    meta = ingress["metadata"]
    namespace = meta.get("namespace", "")
    spec = ingress.get("spec") or {}
    annotations, parse_notes = parse_annotations(meta.get("annotations") or {})
    notes = list(parse_notes)
    read: dict[str, Obj | None] = {}

    def backend_ref(backend: Obj, field: str) -> tuple[tuple[str, Any], ...]:
        ref, problem = _backend_ref(backend, namespace, services, read, field)
        if problem:
            notes.append(Note("Warning", "BackendNotFound", problem))
        return tuple(ref.items())

    error_backend = None
    if annotations.error_pages is not None:
        error_backend, problem = _error_backend(
            annotations.error_pages.service, spec.get("defaultBackend"), namespace, services, read
        )
        if problem:
            notes.append(Note("Warning", "InvalidAnnotation", problem))
    paths: list[Path] = []
    captures = capture_template(annotations.rewrite_target) if annotations.rewrite_target else None
    filtered = (
        captures is not None or annotations.max_body_bytes is not None or error_backend is not None
    )
    for i, rule in enumerate(spec.get("rules") or []):
        host = str(rule.get("host") or "").lower()
        for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
            field = f"spec.rules[{i}].http.paths[{j}]"
            paths.append(
                Path(
                    host=host,
                    match=tuple(_path_match(path, annotations).items()),
                    backend=backend_ref(path.get("backend") or {}, f"{field}.backend"),
                    field=field,
                    filter_name=f"{meta['name']}-filter-{i}-{j}" if filtered else None,
                )
            )
    default = spec.get("defaultBackend")
    return Plan(
        key=key,
        ingress=ingress,
        order=(str(meta.get("creationTimestamp") or ""), key),
        annotations=annotations,
        notes=tuple(notes),
        paths=tuple(paths),
        default_backend=backend_ref(default, "spec.defaultBackend") if default else None,
        tls=tuple(
            (
                tuple(str(h).lower() for h in entry.get("hosts") or ()),
                entry.get("secretName") or None,
            )
            for entry in spec.get("tls") or []
        ),
        services=tuple(sorted(read.items(), key=lambda item: item[0])),
        error_backend=error_backend,
    )


def _path_match(path: Obj, annotations: Annotations) -> dict[str, str]:
    value = str(path.get("path") or "/")
    path_type = path.get("pathType") or "ImplementationSpecific"
    if path_type == "Exact":
        return {"type": "Exact", "value": value}
    if annotations.use_regex:
        # ingress-nginx's `location ~*`: case-insensitive, anchored at the start only
        return {"type": "RegularExpression", "value": f"(?i)(?:{value}).*"}
    if path_type == "ImplementationSpecific" and value.endswith("/*"):
        # AGIC's wildcard form
        value = value[:-2]
    return {"type": "PathPrefix", "value": value.rstrip("/") or "/"}


def _error_backend(
    service: str | None,
    default: Obj | None,
    namespace: str,
    services: Mapping[str, Obj],
    read: dict[str, Obj | None],
) -> tuple[tuple[str, int] | None, str | None]:
    """The Service (name, port) answering custom-http-errors: default-backend's (its
    first port, as ingress-nginx takes it), or spec.defaultBackend's; and why there
    is none."""
    if service is None:
        ref = ((default or {}).get("service") or {}) if default else {}
        if not ref:
            return None, (
                "custom-http-errors needs nginx.ingress.kubernetes.io/default-backend or a "
                "spec.defaultBackend Service to answer the errors; not used"
            )
        found, problem = _backend_ref(default or {}, namespace, services, read, "spec")
        if problem or "port" not in found:
            return None, f"custom-http-errors: {problem or 'spec.defaultBackend has no port'}"
        return (str(found["name"]), int(found["port"])), None
    key = namespaced_name(namespace, service)
    found_service = read[key] = services.get(key)
    ports = ((found_service or {}).get("spec") or {}).get("ports") or []
    if not ports:
        return None, f"default-backend: Service {key} not found (or has no port); not used"
    return (service, int(ports[0]["port"])), None


def _backend_ref(
    backend: Obj,
    namespace: str,
    services: Mapping[str, Obj],
    read: dict[str, Obj | None],
    field: str,
) -> tuple[dict[str, Any], str | None]:
    """The backendRef of an Ingress backend, and what is wrong with it (None: nothing).

    A Resource backend keeps its kind: translation refuses it (500), as it does an
    unknown backendRef kind. A port given by name is looked up in the Service.
    """
    resource = backend.get("resource")
    if resource:
        return {
            "group": resource.get("apiGroup") or "",
            "kind": resource.get("kind", ""),
            "name": resource.get("name", ""),
        }, None
    service = backend.get("service") or {}
    name = str(service.get("name", ""))
    port = service.get("port") or {}
    ref: dict[str, Any] = {"name": name}
    if port.get("number") is not None:
        ref["port"] = int(port["number"])
        return ref, None
    port_name = port.get("name")
    key = namespaced_name(namespace, name)
    found = read[key] = services.get(key)
    if found is None:
        # translation reports the missing Service
        return ref, None
    number = next(
        (
            p.get("port")
            for p in (found.get("spec") or {}).get("ports") or []
            if p.get("name") == port_name
        ),
        None,
    )
    if number is None:
        return ref, f"{field}: Service {key} has no port named {port_name!r}"
    ref["port"] = int(number)
    return ref, None


def backend_refs(plan: Plan) -> set[tuple[str, int]]:
    """(Service "namespace/name", port) of every Service backend the Ingress names."""
    namespace = plan.ingress["metadata"].get("namespace", "")
    refs = [p.backend for p in plan.paths if p.backend is not None]
    if plan.default_backend is not None:
        refs.append(plan.default_backend)
    found = set()
    for items in refs:
        ref = dict(items)
        if not ref.get("kind") and "port" in ref:
            found.add((f"{namespace}/{ref['name']}", int(ref["port"])))
    return found


def base_name(plan: Plan, host: str) -> str:
    name = plan.ingress["metadata"]["name"]
    return f"{name}-{host.replace('*', 'wildcard')}" if host else f"{name}-any-host"


def default_name(plan: Plan) -> str:
    return f"{plan.ingress['metadata']['name']}-default-backend"


def https_listener_name(host: str) -> str:
    if not host:
        return "https"
    name = "https-" + host.replace("*", "wildcard")
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 11] + "-" + hashlib.sha256(host.encode()).hexdigest()[:10]
    return name


def port_listener_names(port: int, host: str) -> tuple[str, str]:
    """The HTTP and HTTPS listener names of `host` on an overriding frontend port."""
    return f"http-{port}", https_listener_name(host).replace("https", f"https-{port}", 1)


def tls_listener_name(host: str) -> str:
    return https_listener_name(host).replace("https", "tls", 1)
