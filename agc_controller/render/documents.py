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
        "ReferenceGrant",
        "Service",
        "EndpointSlice",
        "Secret",
        "ConfigMap",
        "Namespace",
    }
)
_CLUSTER_SCOPED = frozenset({"GatewayClass", "Namespace"})


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
class Translations:
    """Everything `translate_all` decided, in sorted order."""

    # GatewayClass name -> its status (ours only)
    gateway_classes: Mapping[str, Any]
    # "namespace/name" -> the Gateway's translation
    gateways: Mapping[str, GatewayTranslation]
    # "namespace/name" -> the provider outcome its status is computed with, for
    # every Gateway with a model (and no other)
    results: Mapping[str, ApplyResult]

    def result_for(self, translation: GatewayTranslation) -> ApplyResult | None:
        return self.results.get(translation.gateway.namespaced_name)


def translate_all(
    snapshot: Snapshot,
    settings: TranslateSettings,
    *,
    result: ApplyResult = ASSUMED_RESULT,
    dry_run: DryRun | None = None,
) -> Translations:
    """Every GatewayClass and Gateway translated; each Gateway with a model gets
    `result`, or what `dry_run` says the provider would do with it."""
    classes = {}
    for name in sorted(snapshot.gateway_classes):
        status = translate_gateway_class(snapshot, name, settings)
        if status is not None:
            classes[name] = status
    gateways = {
        key: translate_gateway(snapshot, key, settings) for key in sorted(snapshot.gateways)
    }
    results = {key: result for key, t in gateways.items() if t.load_balancer is not None}
    if dry_run is not None:
        results.update(dry_run(gateways))
    return Translations(gateway_classes=classes, gateways=gateways, results=results)


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
    }


def _listener_sets(translations: Translations, t: GatewayTranslation) -> dict[str, Any]:
    """The statuses of the ListenerSets naming the Gateway, under `listenerSets`, if any."""
    statuses = t.listener_set_statuses(translations.result_for(t))
    return {"listenerSets": plain(statuses)} if statuses else {}


def render_model(translations: Translations) -> dict[str, Any]:
    """Only the ALB model per Gateway (null: the Gateway is not programmed at all)."""
    return {"gateways": {key: plain(t.load_balancer) for key, t in translations.gateways.items()}}


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
    }


def to_yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=100)
