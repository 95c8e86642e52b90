"""Offline translation for people: objects in, readable documents out.

Shared by `agc-controller translate` and the golden tests, so the CLI shows
exactly what the golden files pin down.

- `plain` turns attrs values (the ALB model, desired statuses) into plain data.
  Invariant: no certificate or key material survives it; every PEM field
  becomes `sha256:<16 hex>` of its text, enough to tell two certificates apart.
  Empty values are left out, so documents stay short.
- `translate_all` translates every GatewayClass and Gateway of a Snapshot. With
  no cluster and no data plane there is no real outcome to report: each Gateway
  with a model gets `ASSUMED_RESULT` (programmed), unless a provider's dry run
  says what that provider would report instead (its refusals, offline).
- `load_objects` reads YAML files (or stdin) into API objects, refusing
  anything that is not one with an `InputError` naming the file and document.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import yaml

from agc_controller.core.status import ApplyResult, GatewayAddress
from agc_controller.translate import (
    GatewayTranslation,
    Snapshot,
    TranslateSettings,
    translate_gateway,
    translate_gateway_class,
)
from agc_controller.translate.ingress import (
    IngressMemo,
    IngressTranslation,
    class_ingresses,
    default_class,
    ingress_translation_steps,
    provider_annotations,
    requested_class,
)
from agc_controller.translate.ingress.convert import Conversion, convert_ingresses
from agc_controller.translate.ingress.plan import GatewayTarget
from agc_controller.translate.steps import run_to_end

# the outcome assumed for every accepted Gateway: programmed at a TEST-NET address
ASSUMED_RESULT = ApplyResult(
    programmed=True,
    reason="Programmed",
    message="Programmed",
    addresses=(GatewayAddress(type="IPAddress", value="192.0.2.1"),),
)
_PEM_FIELDS = frozenset({"cert_pem", "key_pem", "ca_pem", "pem"})


# kinds translation reads; anything else in the input is reported and skipped
TRANSLATED_KINDS = frozenset(
    {
        "GatewayClass",
        "Gateway",
        "HTTPRoute",
        "GRPCRoute",
        "ListenerSet",
        "BackendTLSPolicy",
        "RateLimitPolicy",
        "HealthCheckPolicy",
        "BackendLoadBalancingPolicy",
        "AuthPolicy",
        "WebApplicationFirewallPolicy",
        "HTTPRouteFilter",
        "ReferenceGrant",
        "Service",
        "EndpointSlice",
        "Secret",
        "ConfigMap",
        "Namespace",
        "IngressClass",
        "Ingress",
    }
)
_CLUSTER_SCOPED = frozenset({"GatewayClass", "Namespace", "IngressClass"})


class InputError(Exception):
    """An input file that cannot be read or does not hold Kubernetes objects."""


@attrs.frozen
class LoadedObjects:
    objects: list[dict[str, Any]]
    # "FILE: document N: kind K is not used by translation", one per skipped object
    skipped: list[str]


def load_objects(paths: Iterable[str], *, default_namespace: str = "default") -> LoadedObjects:
    """Every object in the YAML files `paths` (`-` is stdin), `kind: List` flattened.

    Namespaced objects without a namespace get `default_namespace`, as `kubectl
    apply` would do.
    """
    objects: list[dict[str, Any]] = []
    skipped: list[str] = []
    for path in paths:
        try:
            text = sys.stdin.read() if path == "-" else _read(path)
            documents = list(yaml.safe_load_all(text))
        except OSError as error:
            raise InputError(f"{path}: cannot read: {error.strerror or error}") from error
        except yaml.YAMLError as error:
            raise InputError(f"{path}: invalid YAML: {_one_line(error)}") from error
        for index, document in enumerate(documents, start=1):
            if document is None:
                continue
            where = f"{path}: document {index}"
            if isinstance(document, dict) and document.get("kind") == "List":
                items = document.get("items")
                if not isinstance(items, list):
                    raise InputError(f"{where}: a List without an items list")
                candidates = [(f"{where} item {i}", item) for i, item in enumerate(items, 1)]
            else:
                candidates = [(where, document)]
            for item_where, obj in candidates:
                _check_object(item_where, obj)
                if obj["kind"] not in TRANSLATED_KINDS:
                    skipped.append(f"{item_where}: kind {obj['kind']} is not used by translation")
                    continue
                if obj["kind"] not in _CLUSTER_SCOPED:
                    obj["metadata"].setdefault("namespace", default_namespace)
                objects.append(obj)
    return LoadedObjects(objects=objects, skipped=skipped)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _one_line(error: yaml.YAMLError) -> str:
    return " ".join(str(error).split())


def _check_object(where: str, obj: Any) -> None:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a Kubernetes object (a mapping), got {obj!r:.60}")
    if not isinstance(obj.get("kind"), str) or not obj["kind"]:
        raise InputError(f"{where}: the object has no kind")
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise InputError(f"{where}: the {obj['kind']} has no metadata.name")


def pem_digest(pem: str) -> str:
    return "sha256:" + hashlib.sha256(pem.encode()).hexdigest()[:16]


def plain(value: Any) -> Any:
    """attrs objects → plain data; PEM → a short digest; empty values dropped."""
    if attrs.has(type(value)):
        out = {}
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if field.name in _PEM_FIELDS and isinstance(item, str):
                item = pem_digest(item)
            item = plain(item)
            if item not in (None, (), [], {}):
                out[field.name] = item
        return out
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


# the provider's outcome for each Gateway it would program ("namespace/name" ->
# result), decided offline from the translations: what `translate --provider` runs
DryRun = Callable[[Mapping[str, GatewayTranslation]], Mapping[str, ApplyResult]]


@attrs.frozen
class Migration:
    """Where `-o gateway-api` puts the Gateway API objects it converts Ingresses into."""

    namespace: str = "default"
    gateway_class: str = "agc"


@attrs.frozen
class Translations:
    """Everything `translate_all` decided, in sorted order."""

    # GatewayClass name -> its status (ours only)
    gateway_classes: Mapping[str, Any]
    # "namespace/name" -> the Gateway's translation
    gateways: Mapping[str, GatewayTranslation]
    # "namespace/name" -> the provider outcome its status is computed with, for
    # every Gateway with a model (and no other), the Ingress classes' derived ones too
    results: Mapping[str, ApplyResult]
    # IngressClass name -> its Ingresses' translation (our classes only)
    ingress_classes: Mapping[str, IngressTranslation] = attrs.field(factory=dict)
    # every Ingress of the input as Gateway API objects, one Gateway per class it names
    # (`-o gateway-api`), by Gateway name
    migration: Mapping[str, Conversion] = attrs.field(factory=dict)

    def result_for(self, translation: GatewayTranslation) -> ApplyResult | None:
        return self.results.get(translation.gateway.namespaced_name)

    def programmed_gateways(self) -> dict[str, GatewayTranslation]:
        """Every Gateway a provider would program: the input's, then each IngressClass's
        derived one ("namespace/name")."""
        return {**self.gateways, **_derived(self.ingress_classes)}


def _derived(ingress_classes: Mapping[str, IngressTranslation]) -> dict[str, GatewayTranslation]:
    return {
        t.gateway.gateway.namespaced_name: t.gateway
        for t in ingress_classes.values()
        if t.gateway is not None
    }


def translate_all(
    snapshot: Snapshot,
    settings: TranslateSettings,
    *,
    result: ApplyResult = ASSUMED_RESULT,
    dry_run: DryRun | None = None,
    migration: Migration | None = None,
) -> Translations:
    """Every GatewayClass, Gateway and (our) IngressClass translated; each Gateway
    with a model gets `result`, or what `dry_run` says the provider would do with it.
    With `migration`, every Ingress is also converted to Gateway API objects there."""
    classes = {}
    for name in sorted(snapshot.gateway_classes):
        status = translate_gateway_class(snapshot, name, settings)
        if status is not None:
            classes[name] = status
    gateways = {
        key: translate_gateway(snapshot, key, settings) for key in sorted(snapshot.gateways)
    }
    ingress_classes = {
        name: t
        for name in sorted(snapshot.ingress_classes)
        if (t := _translate_ingress_class(snapshot, name, settings)).gateway is not None
    }
    derived = _derived(ingress_classes)
    results = {
        key: result
        for key, t in (*gateways.items(), *derived.items())
        if t.load_balancer is not None
    }
    if dry_run is not None:
        results.update(dry_run({**gateways, **derived}))
    return Translations(
        gateway_classes=classes,
        gateways=gateways,
        results=results,
        ingress_classes=ingress_classes,
        migration=_migrate(snapshot, settings, migration) if migration is not None else {},
    )


def _translate_ingress_class(
    snapshot: Snapshot, name: str, settings: TranslateSettings
) -> IngressTranslation:
    return run_to_end(ingress_translation_steps(snapshot, name, settings, memo=IngressMemo()))


def _migrate(
    snapshot: Snapshot, settings: TranslateSettings, migration: Migration
) -> dict[str, Conversion]:
    """Every Ingress, grouped by the class it names (none: the default class, or
    `ingress`), converted into a Gateway per group in `migration.namespace`."""
    default = default_class(snapshot.ingress_classes)
    groups = {
        requested_class(ingress) or default or "ingress" for ingress in snapshot.ingresses.values()
    }
    conversions = {}
    for name in sorted(groups):
        if name in snapshot.ingress_classes:
            ingresses = class_ingresses(snapshot.ingresses, snapshot.ingress_classes, name)
        else:
            ingresses = {
                k: i
                for k, i in snapshot.ingresses.items()
                if (requested_class(i) or default or "ingress") == name
            }
        conversions[name] = convert_ingresses(
            ingresses,
            snapshot.services,
            GatewayTarget.serving(
                settings,
                namespace=migration.namespace,
                name=name,
                gateway_class=migration.gateway_class,
                annotations=provider_annotations(snapshot.ingress_classes[name])
                if name in snapshot.ingress_classes
                else (),
            ),
        )
    return conversions


def render_all(translations: Translations) -> dict[str, Any]:
    """Model and every status, per GatewayClass and Gateway (the golden file format)."""
    return {
        "gatewayClasses": {k: plain(v) for k, v in translations.gateway_classes.items()},
        "gateways": {
            key: {
                "status": plain(t.gateway_status(translations.result_for(t))),
                **_listener_sets(translations, t),
                "model": plain(t.load_balancer),
                "routes": plain(t.route_statuses),
                "policies": plain(t.policy_statuses),
            }
            for key, t in translations.gateways.items()
        },
        **_ingress_classes(translations, model=True),
    }


def _ingress_classes(translations: Translations, *, model: bool) -> dict[str, Any]:
    """Per IngressClass of ours (if any): each Ingress's status and Events, and with
    `model`, the model of the class's derived Gateway."""
    if not translations.ingress_classes:
        return {}
    documents = {}
    for name, t in translations.ingress_classes.items():
        result = translations.result_for(t.gateway) if t.gateway is not None else None
        notes = t.notes(result)
        document: dict[str, Any] = {
            "ingresses": {
                f"{s.namespace}/{s.name}": {
                    "status": plain(s),
                    "events": plain(notes.get(f"{s.namespace}/{s.name}", ())),
                }
                for s in sorted(t.ingress_statuses(result), key=lambda s: (s.namespace, s.name))
            }
        }
        if model:
            document["model"] = plain(t.load_balancer)
        documents[name] = document
    return {"ingressClasses": documents}


def _listener_sets(translations: Translations, t: GatewayTranslation) -> dict[str, Any]:
    """The statuses of the ListenerSets naming the Gateway, under `listenerSets`, if any."""
    statuses = t.listener_set_statuses(translations.result_for(t))
    return {"listenerSets": plain(statuses)} if statuses else {}


def render_model(translations: Translations) -> dict[str, Any]:
    """Only the ALB model per Gateway (null: the Gateway is not programmed at all), and
    per IngressClass of ours."""
    document: dict[str, Any] = {
        "gateways": {key: plain(t.load_balancer) for key, t in translations.gateways.items()}
    }
    if translations.ingress_classes:
        document["ingressClasses"] = {
            name: plain(t.load_balancer) for name, t in translations.ingress_classes.items()
        }
    return document


def render_status(translations: Translations) -> dict[str, Any]:
    """Only the statuses: what `kubectl get -o yaml` would show after a reconcile."""
    return {
        "gatewayClasses": {k: plain(v) for k, v in translations.gateway_classes.items()},
        "gateways": {
            key: {
                "status": plain(t.gateway_status(translations.result_for(t))),
                **_listener_sets(translations, t),
                "routes": plain(t.route_statuses),
                "policies": plain(t.policy_statuses),
            }
            for key, t in translations.gateways.items()
        },
        **_ingress_classes(translations, model=False),
    }


def render_gateway_api(translations: Translations) -> str:
    """The Ingresses as Gateway API objects (YAML documents), with what could not be
    converted as comments on top."""
    lines = [
        "# Ingress converted to Gateway API by agc-controller translate -o gateway-api.",
    ]
    documents: list[Any] = []
    for conversion in translations.migration.values():
        for key, notes in sorted(conversion.notes.items()):
            for note in notes:
                lines.append(f"# {key}: {note.reason}: {_comment(note.message)}")
        for service, port in sorted(conversion.h2c_ports):
            lines.append(
                f"# Service {service}: give port {port} appProtocol: kubernetes.io/h2c "
                "(backend-protocol GRPC)"
            )
        objects = [
            conversion.gateway,
            *(conversion.reference_grants[k] for k in sorted(conversion.reference_grants)),
            *(conversion.http_routes[k] for k in sorted(conversion.http_routes)),
            *(conversion.tls_routes[k] for k in sorted(conversion.tls_routes)),
            *(conversion.backend_tls_policies[k] for k in sorted(conversion.backend_tls_policies)),
            *(
                conversion.health_check_policies[k]
                for k in sorted(conversion.health_check_policies)
            ),
            *(
                policies[k]
                for _, policies in sorted(conversion.policies.items())
                for k in sorted(policies)
            ),
        ]
        documents.extend(_applicable(o) for o in objects)
    if len(lines) == 1:
        lines.append("# Every Ingress converted without a note.")
    body = yaml.dump_all(
        documents, Dumper=_PlainDumper, sort_keys=False, width=100, explicit_start=True
    )
    return "\n".join(lines) + "\n" + body


def _applicable(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without the metadata the API server sets (translation reads it)."""
    meta = {
        k: v for k, v in obj["metadata"].items() if k not in ("generation", "creationTimestamp")
    }
    return {**obj, "metadata": meta}


def _comment(text: str) -> str:
    return " ".join(text.split())


class _PlainDumper(yaml.SafeDumper):
    """No anchors and aliases: converted objects share parts, readers want them whole."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=100)
