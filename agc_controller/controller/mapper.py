"""Turn any cached change into the work keys it affects.

Handlers run inside informers after the store is updated, do no I/O and only
enqueue; an update enqueues only when it changes what translation reads
(changes.py). Both the old and the new object are mapped, so a route that
moves from Gateway A to B reconciles both. Keys are `ObjectKey("Gateway", ns, name)`
and `ObjectKey("GatewayClass", "", name)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from agc_controller.controller import indexes as ix
from agc_controller.controller.cache import ATTACHED_POLICY_KINDS, ROUTE_KINDS, Cache
from agc_controller.controller.changes import changes_translation
from agc_controller.core import resources as r
from agc_controller.core.keys import ObjectKey, namespaced_name, object_key
from agc_controller.informers import KubeObject
from agc_controller.translate.ingress import SERVED_NAMESPACE

Enqueue = Callable[[ObjectKey], None]


def gateway_key(key: str) -> ObjectKey:
    """The work key of the Gateway with store key `key`."""
    return ObjectKey.parse(r.GATEWAY.kind, key)


def class_key(name: str) -> ObjectKey:
    return ObjectKey("GatewayClass", "", name)


def ingress_class_key(name: str) -> ObjectKey:
    """The work key of IngressClass `name`: its Ingresses, translated together."""
    return ObjectKey(r.INGRESS_CLASS.kind, "", name)


def data_plane_key(gateway: ObjectKey) -> ObjectKey:
    """The work key that programs the data plane of a provider's Gateway `gateway`:
    its own, or for the Gateway an IngressClass's Ingresses are served as, the
    IngressClass's (no Gateway object of that key exists: reconciling it would
    delete the data plane)."""
    if gateway.namespace == SERVED_NAMESPACE:
        return ingress_class_key(gateway.name)
    return gateway


@attrs.frozen
class Mapper:
    cache: Cache
    enqueue: Enqueue

    def keys_for(self, kind: str, obj: KubeObject) -> set[ObjectKey]:
        """The keys a change of `obj` (of `kind`) affects, given the current cache."""
        meta = obj["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        if kind == r.GATEWAY_CLASS.kind:
            gateways = self.cache.store(r.GATEWAY.kind).by_index(ix.GATEWAY_CLASS, name)
            return {class_key(name)} | self._gateways(gateways)
        if kind == r.GATEWAY.kind:
            return {ObjectKey(r.GATEWAY.kind, namespace, name)}
        if kind in {route.kind for route in ROUTE_KINDS}:
            parents = set(ix.route_parent_gateways(obj))
            parents |= self.cache.gateways_of_listener_sets(ix.route_parent_listener_sets(obj))
            return {gateway_key(g) for g in parents}
        if kind == r.LISTENER_SET.kind:
            return {gateway_key(g) for g in ix.listener_set_parent_gateway(obj)}
        if kind == r.SERVICE.kind:
            return self._via_service(namespaced_name(namespace, name))
        if kind == r.ENDPOINT_SLICE.kind:
            return {k for s in ix.endpoint_slice_service(obj) for k in self._via_service(s)}
        if kind == r.POD.kind:
            # a sidecar pod's service account is what its endpoints must prove, and a
            # pod's probes are its backend's (graph/readiness.py)
            slices = self.cache.store(r.ENDPOINT_SLICE.kind)
            return {
                k
                for endpoint_slice in slices.by_index(ix.POD_TARGETS, f"{namespace}/{name}")
                for s in ix.endpoint_slice_service(endpoint_slice)
                for k in self._via_service(s)
            }
        if kind == r.BACKEND_TLS_POLICY.kind:
            keys = {k for s in ix.policy_target_services(obj) for k in self._via_service(s)}
            return keys | {gateway_key(g) for g in ix.policy_ancestor_gateways(obj)}
        if kind in {policy.kind for policy in ATTACHED_POLICY_KINDS}:
            return self._via_targets(obj) | {
                gateway_key(g) for g in ix.policy_ancestor_gateways(obj)
            }
        if kind in (r.SECRET.kind, r.CONFIG_MAP.kind):
            return self._via_material(f"{kind}/{namespace}/{name}")
        if kind == r.REFERENCE_GRANT.kind:
            return self._via_grant(obj)
        if kind == r.HTTP_ROUTE_FILTER.kind:
            return {
                gateway_key(g)
                for g in self.cache.gateways_of_routes(
                    ix.EXTENSION_REFS, namespaced_name(namespace, name)
                )
            }
        if kind == r.INGRESS_CLASS.kind:
            # which class is the default decides where Ingresses naming none belong
            return {
                ingress_class_key(o["metadata"]["name"])
                for o in self.cache.store(r.INGRESS_CLASS.kind).list()
            } | {ingress_class_key(name)}
        if kind == r.INGRESS.kind:
            return self._ingress_classes([ix.ingress_class_name(obj)])
        if kind == r.NAMESPACE.kind:
            # label changes move routes in and out of Selector listeners, and ListenerSets
            # in and out of Selector Gateways
            return self._gateways(self.cache.store(r.GATEWAY.kind).list())
        return set()

    def jwks_urls(self) -> list[str]:
        """The well-formed JWKS URLs the cached AuthPolicies name (from their index)."""
        return self.cache.store(r.AUTH_POLICY.kind).indexed_values(ix.JWKS_URLS)

    def jwks_changed(self, url: str) -> None:
        """Enqueue the Gateways of the AuthPolicies naming the JWKS at `url`."""
        for policy in self.cache.store(r.AUTH_POLICY.kind).by_index(ix.JWKS_URLS, url):
            for key in self.keys_for(r.AUTH_POLICY.kind, policy):
                self.enqueue(key)

    def handler(self, kind: str) -> _Handler:
        return _Handler(mapper=self, kind=kind)

    def _gateways(self, gateways: Iterable[KubeObject]) -> set[ObjectKey]:
        return {gateway_key(object_key(g)) for g in gateways}

    def _ingress_classes(self, requested: Iterable[Iterable[str]]) -> set[ObjectKey]:
        """The keys of the IngressClasses of Ingresses naming `requested` classes."""
        names = self.cache.ingress_classes_of(c for group in requested for c in group)
        return {ingress_class_key(name) for name in names}

    def _ingresses_by(self, index_name: str, value: str) -> set[ObjectKey]:
        """The IngressClass keys of the Ingresses listed under `value` in `index_name`."""
        store = self.cache.store(r.INGRESS.kind)
        return self._ingress_classes(
            store.index_values(ix.INGRESS_CLASS, k) for k in store.index_keys(index_name, value)
        )

    def _via_service(self, service: str) -> set[ObjectKey]:
        keys = {gateway_key(g) for g in self.cache.gateways_of_routes(ix.BACKEND_SERVICES, service)}
        keys |= self._ingresses_by(ix.BACKEND_SERVICES, service)
        # an AuthPolicy's authorization Service, an HTTPRouteFilter's error pages
        for kind in (r.AUTH_POLICY.kind, r.HTTP_ROUTE_FILTER.kind):
            for obj in self.cache.store(kind).by_index(ix.BACKEND_SERVICES, service):
                keys |= self.keys_for(kind, obj)
        return keys

    def _via_targets(self, policy: KubeObject) -> set[ObjectKey]:
        """The Gateways one of our policies reaches: those it targets, those its target
        routes are attached to (directly or through a ListenerSet), and those with
        routes sending to its target Services."""
        gateways: set[str] = set()
        listener_sets: set[str] = set()
        for target in ix.policy_targets(policy):
            key = ObjectKey.parse(*target.split("/", 1))
            if key.kind == r.GATEWAY.kind:
                gateways.add(key.namespaced_name)
                continue
            if key.kind == r.SERVICE.kind:
                gateways.update(
                    self.cache.gateways_of_routes(ix.BACKEND_SERVICES, key.namespaced_name)
                )
                continue
            store = self.cache.store(key.kind)
            gateways.update(store.index_values(ix.PARENT_GATEWAYS, key.namespaced_name))
            listener_sets.update(store.index_values(ix.PARENT_LISTENER_SETS, key.namespaced_name))
        gateways |= self.cache.gateways_of_listener_sets(listener_sets)
        return {gateway_key(g) for g in gateways}

    def _via_material(self, ref: str) -> set[ObjectKey]:
        gateways = self.cache.store(r.GATEWAY.kind).by_index(ix.CERTIFICATE_REFS, ref)
        keys = self._gateways(gateways) | self._ingresses_by(ix.CERTIFICATE_REFS, ref)
        listener_sets = self.cache.store(r.LISTENER_SET.kind).index_keys(ix.CERTIFICATE_REFS, ref)
        keys |= {gateway_key(g) for g in self.cache.gateways_of_listener_sets(listener_sets)}
        for kind in (r.BACKEND_TLS_POLICY.kind, r.AUTH_POLICY.kind):
            for policy in self.cache.store(kind).by_index(ix.CERTIFICATE_REFS, ref):
                keys |= self.keys_for(kind, policy)
        return keys

    def _via_grant(self, grant: KubeObject) -> set[ObjectKey]:
        """Everything that may refer across namespaces under this grant."""
        keys: set[ObjectKey] = set()
        for source in (grant.get("spec") or {}).get("from") or []:
            namespace = source.get("namespace", "")
            if source.get("kind") == "Gateway":
                gateways = self.cache.store(r.GATEWAY.kind).by_index(ix.NAMESPACE, namespace)
                keys |= self._gateways(gateways)
            elif source.get("kind") == r.LISTENER_SET.kind:
                listener_sets = self.cache.store(r.LISTENER_SET.kind).index_keys(
                    ix.NAMESPACE, namespace
                )
                keys |= {
                    gateway_key(g) for g in self.cache.gateways_of_listener_sets(listener_sets)
                }
            elif source.get("kind") == r.AUTH_POLICY.kind:
                for policy in self.cache.store(r.AUTH_POLICY.kind).list():
                    if policy["metadata"].get("namespace") == namespace:
                        keys |= self.keys_for(r.AUTH_POLICY.kind, policy)
            else:
                parents = self.cache.gateways_of_routes(ix.NAMESPACE, namespace)
                keys |= {gateway_key(g) for g in parents}
        return keys


@attrs.frozen
class _Handler:
    """An informer EventHandler that maps and enqueues."""

    mapper: Mapper
    kind: str

    def on_add(self, obj: KubeObject) -> None:
        self._enqueue(self.mapper.keys_for(self.kind, obj))

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        if not changes_translation(self.kind, old, new):
            return  # a status write (ours, mostly), a resync or a relist: nothing to redo
        self._enqueue(self.mapper.keys_for(self.kind, old) | self.mapper.keys_for(self.kind, new))

    def on_delete(self, obj: KubeObject) -> None:
        self._enqueue(self.mapper.keys_for(self.kind, obj))

    def _enqueue(self, keys: set[ObjectKey]) -> None:
        for key in sorted(keys, key=str):
            self.mapper.enqueue(key)
