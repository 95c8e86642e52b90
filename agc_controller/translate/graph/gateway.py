"""Gateway and listener validation.

Order of checks per listener (the first failure decides Accepted): protocol
supported → not conflicted with another listener on its port → frontend CA
usable. ResolvedRefs is independent: route kinds and certificate refs.
Conflicts never pick a winner inside one Gateway: every listener of a
conflicting group is rejected.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.resources import (
    APPGW_SSL_CERTIFICATE,
    GATEWAY_GROUP,
    KEY_VAULT_SECRET_OPTION,
)
from agc_controller.core.status import Condition, RouteGroupKind
from agc_controller.translate import pem
from agc_controller.translate.capabilities import Capabilities
from agc_controller.translate.graph import appgw
from agc_controller.translate.graph.cabundles import resolve_ca_refs
from agc_controller.translate.hostnames import intersect
from agc_controller.translate.model import Certificate, ClientValidation, RequestedAddress
from agc_controller.translate.refgrants import Ref, ReferenceGrants
from agc_controller.translate.settings import TranslateSettings
from agc_controller.translate.snapshot import Obj, Snapshot

# route kinds each protocol can carry
_KINDS_FOR_PROTOCOL: Mapping[str, tuple[str, ...]] = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
    "TCP": ("TCPRoute",),
    "UDP": ("UDPRoute",),
}
_TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
# Listeners on one port can share it when they take the same kind of connection:
# HTTPS and TLS both start with a TLS ClientHello (its SNI picks the listener);
# UDP uses its own sockets, so it shares a port number with any TCP protocol.
_PORT_SHARING = {"HTTP": "http", "HTTPS": "tls", "TLS": "tls", "TCP": "tcp", "UDP": "udp"}
# protocols whose listener hostname means nothing (no SNI or Host to match)
_NO_HOSTNAME = frozenset({"TCP", "UDP"})


@attrs.frozen
class Listener:
    index: int
    name: str
    port: int
    protocol: str
    hostname: str | None
    # allowedRoutes.namespaces.from: Same | All | Selector | None
    allowed_from: str
    selector: Mapping[str, Any] | None
    supported_kinds: tuple[RouteGroupKind, ...]
    # Accepted, ResolvedRefs, Conflicted, OverlappingTLSConfig (Programmed comes after apply)
    conditions: tuple[Condition, ...]
    # the data plane can serve it: accepted, and TLS material present where needed
    programmable: bool
    # why it cannot be programmed, if it cannot: (Programmed=False reason, message);
    # a conflict keeps its reason (Conflicted, Accepted and Programmed all say it)
    not_programmable: tuple[str, str] | None
    certificates: tuple[Certificate, ...] = ()
    # certificates already on the Application Gateway, by name (graph/appgw.py)
    gateway_certificates: tuple[str, ...] = ()
    # the Key Vault secret of its certificate (graph/appgw.py)
    key_vault_certificate: str | None = None
    client_validation: ClientValidation | None = None


@attrs.frozen
class GatewayNode:
    key: ObjectKey
    generation: int
    class_name: str
    listeners: tuple[Listener, ...]
    # Accepted and, where relevant, ResolvedRefs / InsecureFrontendValidationMode
    conditions: tuple[Condition, ...]
    accepted: bool
    addresses: tuple[RequestedAddress, ...]
    backend_client_certificate: Certificate | None
    infrastructure_labels: tuple[tuple[str, str], ...]
    infrastructure_annotations: tuple[tuple[str, str], ...]
    # the GatewayClass's metadata.annotations overlaid by the Gateway's, sorted
    # (read by providers, e.g. which Application Gateway; never by translation)
    annotations: tuple[tuple[str, str], ...] = ()


@attrs.define
class _ListenerDraft:
    """Mutable while checks run; frozen into a Listener at the end."""

    index: int
    spec: Obj
    accepted_problem: tuple[str, str] | None = None  # (reason, message)
    # its protocol, or TLS mode, is not served: it carries no route kind at all
    unserved: bool = False
    resolved_problems: list[tuple[str, str]] = attrs.field(factory=list)
    conflict: tuple[str, str] | None = None
    overlapping: bool = False
    kinds: tuple[RouteGroupKind, ...] = ()
    certificates: tuple[Certificate, ...] = ()
    # certificates already on the Application Gateway, by name (graph/appgw.py)
    gateway_certificates: tuple[str, ...] = ()
    # the Key Vault secret of its certificate (graph/appgw.py)
    key_vault_certificate: str | None = None
    client_validation: ClientValidation | None = None
    no_certificate: bool = False

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def port(self) -> int:
        return int(self.spec["port"])

    @property
    def protocol(self) -> str:
        return str(self.spec["protocol"])

    @property
    def hostname(self) -> str | None:
        hostname = self.spec.get("hostname")
        return str(hostname) if hostname and self.protocol not in _NO_HOSTNAME else None

    @property
    def tls_mode(self) -> str:
        return str((self.spec.get("tls") or {}).get("mode", "Terminate"))

    @property
    def terminates_tls(self) -> bool:
        """Whether the data plane holds this listener's certificates (not TLS passthrough)."""
        return self.protocol == "HTTPS" or (self.protocol == "TLS" and self.tls_mode == "Terminate")


def build_gateway(
    gateway: Obj,
    snapshot: Snapshot,
    grants: ReferenceGrants,
    settings: TranslateSettings,
    *,
    class_annotations: Mapping[str, str] | None = None,
) -> GatewayNode:
    meta = gateway["metadata"]
    namespace, generation = meta["namespace"], int(meta.get("generation", 1))
    spec = gateway.get("spec") or {}
    drafts = [_ListenerDraft(index=i, spec=ls) for i, ls in enumerate(spec.get("listeners") or [])]

    for d in drafts:
        _check_protocol(d, settings)
        _check_allowed_routes(d)
        d.kinds = _supported_kinds(d, settings)
    _check_conflicts([d for d in drafts if d.accepted_problem is None])
    _check_overlapping_tls(drafts)
    frontend_tls = (spec.get("tls") or {}).get("frontend") or {}
    insecure = False
    for d in drafts:
        _resolve_certificates(d, namespace, snapshot, grants, settings.capabilities)
        insecure |= _resolve_client_validation(d, frontend_tls, namespace, snapshot, grants)

    gateway_conditions: list[Condition] = []
    listeners = tuple(_freeze(d, generation) for d in drafts)
    accepted = _gateway_accepted(spec, listeners, generation)
    gateway_conditions.append(accepted)
    client_cert, client_problem = _backend_client_certificate(spec, namespace, snapshot, grants)
    if client_problem:
        gateway_conditions.append(c.false(c.RESOLVED_REFS, *client_problem, generation))
    else:
        gateway_conditions.append(
            c.true(c.RESOLVED_REFS, c.R_RESOLVED_REFS, "All references are resolved", generation)
        )
    if insecure:
        gateway_conditions.append(
            c.true(
                c.INSECURE_FRONTEND_VALIDATION_MODE,
                c.R_CONFIGURATION_CHANGED,
                "spec.tls.frontend uses mode AllowInsecureFallback: clients without a valid "
                "certificate are accepted",
                generation,
            )
        )
    infrastructure = spec.get("infrastructure") or {}
    return GatewayNode(
        key=ObjectKey("Gateway", namespace, meta["name"]),
        generation=generation,
        class_name=str(spec.get("gatewayClassName", "")),
        listeners=listeners,
        conditions=tuple(gateway_conditions),
        accepted=accepted.status == "True",
        addresses=tuple(
            RequestedAddress(type=str(a.get("type", "IPAddress")), value=str(a.get("value", "")))
            for a in spec.get("addresses") or []
        ),
        backend_client_certificate=client_cert,
        infrastructure_labels=tuple(sorted((infrastructure.get("labels") or {}).items())),
        infrastructure_annotations=tuple(sorted((infrastructure.get("annotations") or {}).items())),
        annotations=tuple(
            sorted({**(class_annotations or {}), **(meta.get("annotations") or {})}.items())
        ),
    )


_ALLOWED_FROM = frozenset({"All", "Same", "Selector"})


def _check_allowed_routes(d: _ListenerDraft) -> None:
    if d.accepted_problem:
        return
    allowed_from = ((d.spec.get("allowedRoutes") or {}).get("namespaces") or {}).get("from", "Same")
    if allowed_from not in _ALLOWED_FROM:
        d.accepted_problem = (
            c.R_UNSUPPORTED_VALUE,
            f"spec.listeners[{d.index}].allowedRoutes.namespaces.from {str(allowed_from)[:64]!r} "
            "is not supported; use All, Same or Selector",
        )


def _check_protocol(d: _ListenerDraft, settings: TranslateSettings) -> None:
    if d.protocol not in settings.protocols:
        d.unserved = True
        d.accepted_problem = (
            c.R_UNSUPPORTED_PROTOCOL,
            f"spec.listeners[{d.index}].protocol {d.protocol!r} is not supported; supported: "
            + ", ".join(sorted(settings.protocols)),
        )
        return
    if d.protocol == "HTTPS" and d.tls_mode != "Terminate":
        d.accepted_problem = (
            c.R_UNSUPPORTED_VALUE,
            f"spec.listeners[{d.index}].tls.mode {d.tls_mode!r} is not supported for HTTPS; "
            "use Terminate",
        )
    elif d.protocol == "TLS" and d.tls_mode not in settings.tls_modes:
        d.unserved = True
        d.accepted_problem = (
            c.R_UNSUPPORTED_VALUE,
            f"spec.listeners[{d.index}].tls.mode {d.tls_mode!r} is not supported for TLS; "
            f"use {' or '.join(sorted(settings.tls_modes))}",
        )


def _supported_kinds(d: _ListenerDraft, settings: TranslateSettings) -> tuple[RouteGroupKind, ...]:
    if d.unserved:
        return ()
    for_protocol = _KINDS_FOR_PROTOCOL.get(d.protocol, ())
    ours = [k for g, k in sorted(settings.route_kinds) if g == GATEWAY_GROUP and k in for_protocol]
    requested = (d.spec.get("allowedRoutes") or {}).get("kinds")
    if not requested:
        return tuple(RouteGroupKind(kind=k) for k in ours)
    kinds, invalid = [], []
    for entry in requested:
        group, kind = entry.get("group", GATEWAY_GROUP), entry.get("kind", "")
        if group == GATEWAY_GROUP and kind in ours:
            kinds.append(RouteGroupKind(kind=kind, group=group))
        else:
            invalid.append(f"{group}/{kind}" if group else kind)
    if invalid:
        d.resolved_problems.append(
            (
                c.R_INVALID_ROUTE_KINDS,
                f"spec.listeners[{d.index}].allowedRoutes.kinds has kinds this listener cannot "
                f"serve: {', '.join(invalid)}",
            )
        )
    return tuple(dict.fromkeys(kinds))


def _check_conflicts(drafts: list[_ListenerDraft]) -> None:
    by_port: dict[tuple[int, bool], list[_ListenerDraft]] = defaultdict(list)
    for d in drafts:
        by_port[(d.port, d.protocol == "UDP")].append(d)
    for (port, _), group in by_port.items():
        protocols = {d.protocol for d in group}
        if len({_PORT_SHARING.get(p, p) for p in protocols}) > 1:
            for d in group:
                d.conflict = (
                    c.R_PROTOCOL_CONFLICT,
                    f"Port {port} is used by listeners of different protocols "
                    f"({', '.join(sorted(protocols))})",
                )
            continue
        seen: dict[str | None, list[_ListenerDraft]] = defaultdict(list)
        for d in group:
            seen[d.hostname].append(d)
        for hostname, same in seen.items():
            if len(same) > 1:
                for d in same:
                    d.conflict = (
                        c.R_HOSTNAME_CONFLICT,
                        f"Listeners {', '.join(x.name for x in same)} share port {port} and "
                        f"hostname {hostname or '(none)'}",
                    )


def _check_overlapping_tls(drafts: list[_ListenerDraft]) -> None:
    tls = [d for d in drafts if d.protocol in _TLS_PROTOCOLS and d.accepted_problem is None]
    for a in tls:
        for b in tls:
            if a is not b and a.port == b.port and intersect(a.hostname, b.hostname) is not None:
                a.overlapping = True


def _resolve_certificates(
    d: _ListenerDraft,
    namespace: str,
    snapshot: Snapshot,
    grants: ReferenceGrants,
    capabilities: Capabilities,
    *,
    from_kind: str = "Gateway",
) -> None:
    if not d.terminates_tls or d.accepted_problem:
        return
    tls = d.spec.get("tls") or {}
    secret_id = (tls.get("options") or {}).get(KEY_VAULT_SECRET_OPTION)
    if secret_id is not None:
        field = f"spec.listeners[{d.index}].tls.options[{KEY_VAULT_SECRET_OPTION!r}]"
        if problem := appgw.key_vault_problem(field, secret_id, capabilities):
            d.resolved_problems.append((c.R_INVALID_CERTIFICATE_REF, problem))
        else:
            d.key_vault_certificate = str(secret_id)
    refs = tls.get("certificateRefs") or []
    certificates = []
    for i, ref in enumerate(refs):
        field = f"spec.listeners[{d.index}].tls.certificateRefs[{i}]"
        if appgw.names(ref, APPGW_SSL_CERTIFICATE):
            if problem := appgw.problem(field, ref, capabilities):
                d.resolved_problems.append((c.R_INVALID_CERTIFICATE_REF, problem))
            else:
                d.gateway_certificates += (str(ref["name"]),)
            continue
        group, kind = ref.get("group", ""), ref.get("kind", "Secret")
        ref_ns = ref.get("namespace") or namespace
        target = Ref(group, kind, ref_ns, str(ref.get("name", "")))
        if not grants.allows(
            from_group=GATEWAY_GROUP, from_kind=from_kind, from_namespace=namespace, to=target
        ):
            d.resolved_problems.append(
                (
                    c.R_REF_NOT_PERMITTED,
                    f"{field} refers to {kind} {ref_ns}/{target.name} in another namespace, "
                    "and no ReferenceGrant allows it",
                )
            )
            continue
        if group != "" or kind != "Secret":
            d.resolved_problems.append(
                (
                    c.R_INVALID_CERTIFICATE_REF,
                    f"{field} must refer to a core Secret, not {group or 'core'}/{kind}",
                )
            )
            continue
        secret = snapshot.secrets.get(namespaced_name(ref_ns, target.name))
        if secret is None:
            d.resolved_problems.append(
                (c.R_INVALID_CERTIFICATE_REF, f"{field}: Secret {ref_ns}/{target.name} not found")
            )
            continue
        try:
            cert_pem, key_pem = pem.tls_pair(secret)
        except pem.InvalidMaterial as e:
            d.resolved_problems.append(
                (c.R_INVALID_CERTIFICATE_REF, f"{field}: Secret {ref_ns}/{target.name}: {e}")
            )
            continue
        certificates.append(
            Certificate(
                secret=ObjectKey("Secret", ref_ns, target.name), cert_pem=cert_pem, key_pem=key_pem
            )
        )
    d.certificates = tuple(certificates)
    d.no_certificate = not (certificates or d.gateway_certificates or d.key_vault_certificate)


def _resolve_client_validation(
    d: _ListenerDraft,
    frontend_tls: Obj,
    namespace: str,
    snapshot: Snapshot,
    grants: ReferenceGrants,
) -> bool:
    """Resolve frontend mTLS for an HTTPS listener; True if it uses the insecure fallback."""
    if d.protocol != "HTTPS" or d.accepted_problem:
        return False
    config, field = frontend_tls.get("default"), "spec.tls.frontend.default"
    for i, per_port in enumerate(frontend_tls.get("perPort") or []):
        if per_port.get("port") == d.port:
            config, field = per_port.get("tls"), f"spec.tls.frontend.perPort[{i}].tls"
    validation = (config or {}).get("validation")
    if not validation:
        return False
    resolved = resolve_ca_refs(
        validation.get("caCertificateRefs") or [],
        field=f"{field}.validation.caCertificateRefs",
        namespace=namespace,
        snapshot=snapshot,
        wrong_kind_reason=c.R_INVALID_CA_CERTIFICATE_KIND,
        permitted=lambda target: grants.allows(
            from_group=GATEWAY_GROUP, from_kind="Gateway", from_namespace=namespace, to=target
        ),
    )
    d.resolved_problems.extend(resolved.problems)
    insecure = bool(validation.get("mode") == "AllowInsecureFallback")
    if resolved.pem is not None:
        d.client_validation = ClientValidation(ca_pem=resolved.pem, insecure_fallback=insecure)
    elif resolved.problems:
        d.accepted_problem = (
            c.R_NO_VALID_CA_CERTIFICATE,
            f"{field}.validation has no usable CA certificate",
        )
    return insecure


def _freeze(d: _ListenerDraft, generation: int) -> Listener:
    conds: list[Condition] = []
    problem = d.conflict or d.accepted_problem
    if problem:
        conds.append(c.false(c.ACCEPTED, *problem, generation))
    else:
        conds.append(c.true(c.ACCEPTED, c.R_ACCEPTED, "The listener is accepted", generation))
    if d.resolved_problems:
        reason = d.resolved_problems[0][0]
        text = c.join_problems([m for _, m in d.resolved_problems])
        conds.append(c.false(c.RESOLVED_REFS, reason, text, generation))
    else:
        conds.append(
            c.true(c.RESOLVED_REFS, c.R_RESOLVED_REFS, "All references are resolved", generation)
        )
    if d.conflict:
        conds.append(c.true(c.CONFLICTED, d.conflict[0], d.conflict[1], generation))
    else:
        conds.append(c.false(c.CONFLICTED, c.R_NO_CONFLICTS, "No conflicts", generation))
    if d.overlapping:
        conds.append(
            c.true(
                c.OVERLAPPING_TLS_CONFIG,
                c.R_OVERLAPPING_HOSTNAMES,
                f"Another TLS listener on port {d.port} has an overlapping hostname",
                generation,
            )
        )
    not_programmable: tuple[str, str] | None = None
    if d.conflict:
        not_programmable = d.conflict
    elif problem:
        not_programmable = (c.R_INVALID, problem[1])
    elif d.terminates_tls and d.no_certificate:
        not_programmable = (c.R_INVALID, f"spec.listeners[{d.index}].tls has no usable certificate")
    allowed = (d.spec.get("allowedRoutes") or {}).get("namespaces") or {}
    return Listener(
        index=d.index,
        name=d.name,
        port=d.port,
        protocol=d.protocol,
        hostname=d.hostname,
        allowed_from=str(allowed.get("from", "Same")),
        selector=allowed.get("selector"),
        supported_kinds=d.kinds,
        conditions=tuple(conds),
        programmable=not_programmable is None,
        not_programmable=not_programmable,
        certificates=d.certificates,
        gateway_certificates=d.gateway_certificates,
        key_vault_certificate=d.key_vault_certificate,
        client_validation=d.client_validation,
    )


def _gateway_accepted(spec: Obj, listeners: tuple[Listener, ...], generation: int) -> Condition:
    params = (spec.get("infrastructure") or {}).get("parametersRef")
    if params:
        return c.false(
            c.ACCEPTED,
            c.R_INVALID_PARAMETERS,
            f"spec.infrastructure.parametersRef ({params.get('kind')} {params.get('name')}) is "
            "not supported by this controller",
            generation,
        )
    for i, address in enumerate(spec.get("addresses") or []):
        if address.get("type", "IPAddress") != "IPAddress":
            return c.false(
                c.ACCEPTED,
                c.R_UNSUPPORTED_ADDRESS,
                f"spec.addresses[{i}].type {address.get('type')!r} is not supported; use IPAddress",
                generation,
            )
    accepted = [ls for ls in listeners if ls.conditions[0].status == "True"]
    if len(accepted) == len(listeners):
        return c.true(c.ACCEPTED, c.R_ACCEPTED, "The Gateway is accepted", generation)
    invalid = ", ".join(ls.name for ls in listeners if ls not in accepted)
    if accepted:
        return c.true(
            c.ACCEPTED,
            c.R_LISTENERS_NOT_VALID,
            f"Some listeners are not valid: {invalid}",
            generation,
        )
    return c.false(
        c.ACCEPTED, c.R_LISTENERS_NOT_VALID, f"No listener is valid: {invalid}", generation
    )


def _backend_client_certificate(
    spec: Obj, namespace: str, snapshot: Snapshot, grants: ReferenceGrants
) -> tuple[Certificate | None, tuple[str, str] | None]:
    ref = ((spec.get("tls") or {}).get("backend") or {}).get("clientCertificateRef")
    if not ref:
        return None, None
    field = "spec.tls.backend.clientCertificateRef"
    group, kind = ref.get("group", ""), ref.get("kind", "Secret")
    ref_ns, name = ref.get("namespace") or namespace, str(ref.get("name", ""))
    if group != "" or kind != "Secret":
        return None, (
            c.R_INVALID_CLIENT_CERTIFICATE_REF,
            f"{field} must refer to a core Secret, not {group or 'core'}/{kind}",
        )
    if not grants.allows(
        from_group=GATEWAY_GROUP,
        from_kind="Gateway",
        from_namespace=namespace,
        to=Ref(group, kind, ref_ns, name),
    ):
        return None, (
            c.R_REF_NOT_PERMITTED,
            f"{field} refers to Secret {ref_ns}/{name} in another namespace, and no "
            "ReferenceGrant allows it",
        )
    secret = snapshot.secrets.get(namespaced_name(ref_ns, name))
    if secret is None:
        return None, (
            c.R_INVALID_CLIENT_CERTIFICATE_REF,
            f"{field}: Secret {ref_ns}/{name} not found",
        )
    try:
        cert_pem, key_pem = pem.tls_pair(secret)
    except pem.InvalidMaterial as e:
        return None, (c.R_INVALID_CLIENT_CERTIFICATE_REF, f"{field}: Secret {ref_ns}/{name}: {e}")
    return Certificate(ObjectKey("Secret", ref_ns, name), cert_pem, key_pem), None


# (port, protocol, hostname, accepted so far) of one listener -> the (reason,
# message) of its conflict with an earlier listener, or None
ConflictCheck = Callable[[int, str, str | None, bool], tuple[str, str] | None]


def build_listener_entries(
    specs: Sequence[Obj],
    *,
    namespace: str,
    from_kind: str,
    gateway_namespace: str,
    frontend_tls: Obj,
    snapshot: Snapshot,
    grants: ReferenceGrants,
    settings: TranslateSettings,
    generation: int,
    conflict_with_earlier: ConflictCheck,
) -> tuple[Listener, ...]:
    """Listeners of another kind whose entries have a Gateway listener's shape (a
    ListenerSet's spec.listeners), validated as a Gateway's are, in spec order.

    Two differences: their certificate refs resolve from `namespace` as
    `from_kind`; and conflicts have a winner, asked of `conflict_with_earlier`
    for each listener in turn (every one, so a protocol this controller does not
    serve still reports the conflict). The Gateway's `frontend_tls` (in
    `gateway_namespace`) applies to them as to its own HTTPS listeners.
    """
    drafts = [_ListenerDraft(index=i, spec=ls) for i, ls in enumerate(specs)]
    for d in drafts:
        _check_protocol(d, settings)
        _check_allowed_routes(d)
        d.kinds = _supported_kinds(d, settings)
        d.conflict = conflict_with_earlier(
            d.port, d.protocol, d.hostname, d.accepted_problem is None
        )
    for d in drafts:
        _resolve_certificates(
            d, namespace, snapshot, grants, settings.capabilities, from_kind=from_kind
        )
        _resolve_client_validation(d, frontend_tls, gateway_namespace, snapshot, grants)
    return tuple(_freeze(d, generation) for d in drafts)
