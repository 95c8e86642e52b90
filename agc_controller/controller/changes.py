"""Which updates can change a translation: the handlers enqueue only for those.

Every reconcile of a Gateway costs work that grows with its routes, so an
update that changes nothing translation reads must not cause one. Most updates
a controller sees are exactly that: our own status writes coming back through
the watch (one per route per change), other controllers' status writes,
resyncs and relists that deliver an object unchanged.

What translation reads, per kind:
- Gateway API kinds (their spec changes bump `metadata.generation`; status
  changes never do): generation, labels and annotations. Route and policy
  status is read only to find our own stale entries, which a later spec change
  or our own write handles, so a status-only update never needs a reconcile.
- Service: spec, labels, annotations (not status.loadBalancer).
- EndpointSlice: endpoints, ports, address type, labels (the Service name).
- Secret: type and data; ConfigMap: data (the informers already trim both to
  the keys a Gateway can use).
- Namespace: labels (listener `allowedRoutes` selectors).
- Pod: its service account (the mesh) and httpGet readiness and liveness probes
  with the ports of their containers (probes derived from them), as trimmed.

Adds and deletes always count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agc_controller.core import resources as r
from agc_controller.informers import KubeObject

View = Callable[[KubeObject], tuple[Any, ...]]


def _meta(obj: KubeObject, field: str) -> Any:
    return obj.get("metadata", {}).get(field)


def _spec_generation(obj: KubeObject) -> tuple[Any, ...]:
    return (_meta(obj, "generation"), _meta(obj, "labels"), _meta(obj, "annotations"))


def _service(obj: KubeObject) -> tuple[Any, ...]:
    return (obj.get("spec"), _meta(obj, "labels"), _meta(obj, "annotations"))


def _endpoint_slice(obj: KubeObject) -> tuple[Any, ...]:
    return (obj.get("endpoints"), obj.get("ports"), obj.get("addressType"), _meta(obj, "labels"))


def _secret(obj: KubeObject) -> tuple[Any, ...]:
    return (obj.get("type"), obj.get("data"))


def _config_map(obj: KubeObject) -> tuple[Any, ...]:
    return (obj.get("data"),)


def _namespace(obj: KubeObject) -> tuple[Any, ...]:
    return (_meta(obj, "labels"),)


def _pod(obj: KubeObject) -> tuple[Any, ...]:
    # the informer trims a pod to what is read (informers/transforms.py)
    return (obj.get("spec"),)


# kind -> the part of an object translation reads
_VIEWS: Mapping[str, View] = {
    r.SERVICE.kind: _service,
    r.ENDPOINT_SLICE.kind: _endpoint_slice,
    r.SECRET.kind: _secret,
    r.CONFIG_MAP.kind: _config_map,
    r.NAMESPACE.kind: _namespace,
    r.POD.kind: _pod,
}


def changes_translation(kind: str, old: KubeObject, new: KubeObject) -> bool:
    """Whether updating `old` to `new` can change what translation produces."""
    view = _VIEWS.get(kind, _spec_generation)
    return view(old) != view(new)
