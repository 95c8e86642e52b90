"""Ingress: the Ingresses of one of our IngressClasses, translated like a Gateway. PURE.

An IngressClass is ours when its `spec.controller` is our Ingress controller
value. An Ingress belongs to the class its `spec.ingressClassName` names, or the
legacy `kubernetes.io/ingress.class` annotation names; one that names neither
belongs to the default class (`ingressclass.kubernetes.io/is-default-class`;
with several, the newest, as the API server's admission picks). The class's
Ingresses become one Gateway and its routes (convert.py), which translate like
any Gateway's: the model goes to the provider unchanged, and what translation
says about the derived routes and listeners comes back to each Ingress as notes
(Events; Ingress has no conditions) and `status.loadBalancer`.

The derived Gateway lives in `SERVED_NAMESPACE`, a name no namespace can have
(it has dots), so it never meets a real Gateway in a provider.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from typing import TypeVar

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import ApplyResult, GatewayAddress, IngressStatus, RouteStatus
from agc_controller.translate import GatewayTranslation, Memo, Snapshot, translation_steps
from agc_controller.translate.graph.backends import H2C_APP_PROTOCOL
from agc_controller.translate.ingress.convert import Conversion, ConversionMemo, conversion_steps
from agc_controller.translate.ingress.plan import GatewayTarget
from agc_controller.translate.ingress.values import Note
from agc_controller.translate.model import LoadBalancer
from agc_controller.translate.settings import TranslateSettings
from agc_controller.translate.snapshot import Obj

__all__ = [
    "DEFAULT_CLASS_ANNOTATION",
    "LEGACY_CLASS_ANNOTATION",
    "SERVED_NAMESPACE",
    "IngressMemo",
    "IngressTranslation",
    "Note",
    "class_ingresses",
    "default_class",
    "ingress_gateway_key",
    "ingress_translation_steps",
    "provider_annotations",
    "requested_class",
    "served_gateway",
]

LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
SERVED_NAMESPACE = "ingressclass.agc-controller.io"
T = TypeVar("T")


def requested_class(ingress: Obj) -> str:
    """The IngressClass an Ingress names ("": none, the default class's)."""
    named = (ingress.get("spec") or {}).get("ingressClassName")
    if named:
        return str(named)
    return str((ingress["metadata"].get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION, ""))


def default_class(classes: Mapping[str, Obj]) -> str | None:
    """The default IngressClass (whoever's it is): the newest marked default."""
    marked = [
        ((o["metadata"].get("creationTimestamp") or ""), name)
        for name, o in classes.items()
        if (o["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    return max(marked)[1] if marked else None


def class_ingresses(
    ingresses: Mapping[str, Obj], classes: Mapping[str, Obj], name: str
) -> dict[str, Obj]:
    """The Ingresses of class `name`."""
    default = default_class(classes) == name
    return {
        key: ingress
        for key, ingress in ingresses.items()
        if requested_class(ingress) == name or (default and not requested_class(ingress))
    }


# IngressClass annotations that are about the class itself, not the data plane's settings
_CLASS_OWN_ANNOTATIONS = ("ingressclass.kubernetes.io/", "kubectl.kubernetes.io/")


def provider_annotations(ingress_class: Obj) -> tuple[tuple[str, str], ...]:
    """The IngressClass's annotations the derived Gateway carries: provider settings
    (for azure, `azure.agc-controller.io/…`: which Application Gateway, which frontend)."""
    return tuple(
        sorted(
            (k, str(v))
            for k, v in (ingress_class["metadata"].get("annotations") or {}).items()
            if not k.startswith(_CLASS_OWN_ANNOTATIONS)
        )
    )


def served_gateway(
    class_name: str, settings: TranslateSettings, ingress_class: Obj | None = None
) -> GatewayTarget:
    """Where the controller puts the Gateway it derives for IngressClass `class_name`."""
    return GatewayTarget.serving(
        settings,
        namespace=SERVED_NAMESPACE,
        name=class_name,
        gateway_class=f"{SERVED_NAMESPACE}/{class_name}",
        annotations=provider_annotations(ingress_class) if ingress_class else (),
    )


@attrs.define
class IngressMemo:
    """What the last translation of one IngressClass can lend the next. What it
    reports is kept as the same objects while unchanged, so the caller skips
    unchanged Ingresses by identity (as it does route statuses)."""

    conversion: ConversionMemo = attrs.field(factory=ConversionMemo)
    gateway: Memo = attrs.field(factory=Memo)
    # Ingress store key -> its last status
    statuses: dict[str, IngressStatus] = attrs.field(factory=dict)
    # route store key -> (its status, its rules' Ingress fields, the notes made of them)
    route_notes: dict[str, tuple[object, tuple[str, ...], tuple[Note, ...]]] = attrs.field(
        factory=dict
    )
    # Ingress store key -> its last notes
    notes: dict[str, tuple[Note, ...]] = attrs.field(factory=dict)

    def kept(self, table: dict[str, T], key: str, value: T) -> T:
        """`value`, or the one `table` holds for `key` when equal."""
        previous = table.get(key)
        if previous is not None and previous == value:
            return previous
        table[key] = value
        return value


@attrs.frozen
class IngressTranslation:
    class_name: str
    # the derived Gateway's translation; None: the class is not ours (or gone)
    gateway: GatewayTranslation | None
    conversion: Conversion | None
    # Ingress store key -> the Ingress (those of the class)
    ingresses: Mapping[str, Obj]
    memo: IngressMemo = attrs.field(factory=IngressMemo, eq=False)

    @property
    def load_balancer(self) -> LoadBalancer | None:
        return self.gateway.load_balancer if self.gateway is not None else None

    def ingress_statuses(self, result: ApplyResult | None) -> tuple[IngressStatus, ...]:
        """`status.loadBalancer` of every Ingress of the class, once `apply` went as `result`."""
        addresses: tuple[GatewayAddress, ...] = (
            result.addresses if result is not None and result.programmed else ()
        )
        known = self.memo.statuses
        statuses = {}
        for key, ingress in self.ingresses.items():
            status = known.get(key)
            if status is None or status.addresses != addresses:
                status = IngressStatus(
                    namespace=ingress["metadata"].get("namespace", ""),
                    name=ingress["metadata"]["name"],
                    addresses=addresses,
                )
            statuses[key] = status
        self.memo.statuses = statuses
        return tuple(statuses.values())

    def notes(self, result: ApplyResult | None) -> dict[str, tuple[Note, ...]]:
        """Ingress store key -> what its owner should hear about now: the conversion's
        notes, what translation found wrong with the routes made of it, and the data
        plane's refusal. Ingresses with nothing to hear about are left out."""
        if self.conversion is None or self.gateway is None:
            return {}
        memo = self.memo
        found: dict[str, dict[Note, None]] = {
            key: dict.fromkeys(notes) for key, notes in self.conversion.notes.items()
        }
        route_notes = {}
        for status in self.gateway.route_statuses:
            route_key = f"{status.namespace}/{status.name}"
            origin = self.conversion.origins.get(route_key)
            if origin is None:
                continue
            fields = self.conversion.rule_fields.get(route_key, ())
            known = memo.route_notes.get(route_key)
            if known is None or known[0] is not status or known[1] != fields:
                known = (status, fields, _route_notes(status, fields))
            route_notes[route_key] = known
            if known[2]:
                found.setdefault(origin, {}).update(dict.fromkeys(known[2]))
        memo.route_notes = route_notes
        for policy in self.gateway.policy_statuses:
            origin = self.conversion.policy_origins.get(
                (policy.kind, f"{policy.namespace}/{policy.name}")
            )
            if origin is None:
                continue
            for ancestor in policy.ancestors:
                for cond in ancestor.conditions:
                    if _is_problem(cond.type, cond.status):
                        note = Note(
                            "Warning", cond.reason, f"{policy.kind} {policy.name}: {cond.message}"
                        )
                        found.setdefault(origin, {})[note] = None
        for listener in self.gateway.node.listeners if self.gateway.node else ():
            origin = self.conversion.listener_origins.get(listener.name)
            if origin is None:
                continue
            for cond in listener.conditions:
                if _is_problem(cond.type, cond.status):
                    note = Note(
                        "Warning",
                        cond.reason,
                        f"HTTPS for {listener.hostname or 'every host'}: {cond.message}",
                    )
                    found.setdefault(origin, {})[note] = None
        if result is not None and not result.programmed:
            refusal = Note("Warning", "NotProgrammed", f"{result.reason}: {result.message}")
            for key in self.ingresses:
                found.setdefault(key, {})[refusal] = None
        reported = {key: memo.kept(memo.notes, key, tuple(n)) for key, n in found.items()}
        memo.notes = {k: memo.notes[k] for k in reported}
        return reported


def _route_notes(status: RouteStatus, fields: tuple[str, ...]) -> tuple[Note, ...]:
    """What a derived route's status says is wrong, about the Ingress it comes from."""
    notes: dict[Note, None] = {}
    for parent in status.parents:
        for cond in parent.conditions:
            if _is_problem(cond.type, cond.status):
                message = _in_ingress_terms(cond.message, status.name, fields)
                notes[Note("Warning", cond.reason, message)] = None
    return tuple(notes)


_RULE_FIELD = re.compile(r"spec\.rules\[(\d+)\]")


def _in_ingress_terms(message: str, route: str, fields: tuple[str, ...]) -> str:
    """A route condition's message about the Ingress: a derived route's rule is named
    by the Ingress field it comes from, and the route is named for `-o gateway-api`."""

    def ingress_field(found: re.Match[str]) -> str:
        index = int(found.group(1))
        return fields[index] if index < len(fields) else found.group(0)

    text = _RULE_FIELD.sub(ingress_field, message).removesuffix(".")
    return f"{text} (HTTPRoute {route})."


def _is_problem(condition: str, status: str) -> bool:
    """Whether a route's or listener's condition says something is wrong."""
    if condition in (c.PARTIALLY_INVALID, c.CONFLICTED):
        return status == "True"
    return status == "False"


def ingress_translation_steps(
    snapshot: Snapshot, class_name: str, settings: TranslateSettings, *, memo: IngressMemo
) -> Generator[None, None, IngressTranslation]:
    """The Ingresses of IngressClass `class_name` translated, in steps as
    `translation_steps` takes them (the same pauses)."""
    ingress_class = snapshot.ingress_classes.get(class_name)
    if ingress_class is None or not _is_ours(ingress_class, settings):
        return IngressTranslation(
            class_name=class_name, gateway=None, conversion=None, ingresses={}
        )
    ingresses = class_ingresses(snapshot.ingresses, snapshot.ingress_classes, class_name)
    if not ingresses:
        # nothing to serve: no data plane (an installed class costs nothing until used)
        return IngressTranslation(
            class_name=class_name, gateway=None, conversion=None, ingresses={}
        )
    target = served_gateway(class_name, settings, ingress_class)
    conversion = yield from conversion_steps(
        ingresses, snapshot.services, target, memo=memo.conversion
    )
    gateway_key = f"{target.namespace}/{target.name}"
    derived = attrs.evolve(
        snapshot,
        gateway_classes={target.gateway_class: conversion.gateway_class},
        gateways={gateway_key: conversion.gateway},
        http_routes=conversion.http_routes,
        grpc_routes={},
        tls_routes=conversion.tls_routes,
        tcp_routes={},
        udp_routes={},
        listener_sets={},
        reference_grants=conversion.reference_grants,
        services=_speaking_h2c(snapshot.services, conversion.h2c_ports, memo.conversion),
        backend_tls_policies=conversion.backend_tls_policies,
        rate_limit_policies=conversion.policies.get("RateLimitPolicy", {}),
        auth_policies=conversion.policies.get("AuthPolicy", {}),
        health_check_policies=conversion.health_check_policies,
        load_balancing_policies=conversion.policies.get("BackendLoadBalancingPolicy", {}),
        waf_policies=conversion.policies.get("WebApplicationFirewallPolicy", {}),
        route_filters=conversion.policies.get("HTTPRouteFilter", {}),
        ingress_classes={},
        ingresses={},
    )
    translation = yield from translation_steps(derived, gateway_key, settings, memo=memo.gateway)
    return IngressTranslation(
        class_name=class_name,
        gateway=translation,
        conversion=conversion,
        ingresses=ingresses,
        memo=memo,
    )


def _speaking_h2c(
    services: Mapping[str, Obj], ports: frozenset[tuple[str, int]], memo: ConversionMemo
) -> Mapping[str, Obj]:
    """`services`, those with ports an Ingress speaks gRPC to (backend-protocol GRPC)
    given appProtocol kubernetes.io/h2c there (kept as the same objects while equal)."""
    if not ports:
        return services
    patched = dict(services)
    for key in {service for service, _ in ports}:
        service = services.get(key)
        if service is None:
            continue
        spec = service.get("spec") or {}
        copy = {
            **service,
            "spec": {
                **spec,
                "ports": [
                    {**p, "appProtocol": H2C_APP_PROTOCOL} if (key, p.get("port")) in ports else p
                    for p in spec.get("ports") or []
                ],
            },
        }
        patched[key] = memo.stable(f"service:{key}", copy)
    return patched


def _is_ours(ingress_class: Obj, settings: TranslateSettings) -> bool:
    return (ingress_class.get("spec") or {}).get("controller") == settings.ingress_controller


def ingress_gateway_key(class_name: str) -> ObjectKey:
    """The key of the Gateway derived for IngressClass `class_name` (the provider's)."""
    return ObjectKey("Gateway", SERVED_NAMESPACE, class_name)
