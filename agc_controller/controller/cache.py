"""The informer stores the controller reads, their indexes, and snapshots built from them.

A snapshot holds only what one Gateway's translation can touch, gathered
through indexes, so the work per key grows with that Gateway's routes rather
than with the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from agc_controller.controller import indexes as ix
from agc_controller.core import resources as r
from agc_controller.core.keys import ObjectKey, object_key
from agc_controller.informers import Store
from agc_controller.translate import ingress
from agc_controller.translate.snapshot import Obj, RemoteDocument, Snapshot

ROUTE_KINDS = (r.HTTP_ROUTE, r.GRPC_ROUTE, r.TLS_ROUTE, r.TCP_ROUTE, r.UDP_ROUTE)
# our policy kinds (graph/policies.py): they target Gateways, listeners, routes, rules
ATTACHED_POLICY_KINDS = (
    r.RATE_LIMIT_POLICY,
    r.HEALTH_CHECK_POLICY,
    r.LOAD_BALANCING_POLICY,
    r.AUTH_POLICY,
    r.WAF_POLICY,
)
# the route kinds our policies can target
POLICY_TARGET_ROUTE_KINDS = (r.HTTP_ROUTE, r.GRPC_ROUTE)

# indexes each kind's store carries
INDEXES: Mapping[str, Mapping[str, ix.Indexer]] = {
    r.GATEWAY.kind: {
        ix.GATEWAY_CLASS: ix.gateway_class_name,
        ix.NAMESPACE: ix.namespace_of,
        ix.CERTIFICATE_REFS: ix.gateway_certificate_refs,
    },
    **{
        route.kind: {
            ix.PARENT_GATEWAYS: ix.route_parent_gateways,
            ix.PARENT_LISTENER_SETS: ix.route_parent_listener_sets,
            ix.BACKEND_SERVICES: ix.route_backend_services,
            ix.NAMESPACE: ix.namespace_of,
            # HTTPRoute rules name our HTTPRouteFilters (other kinds: none)
            ix.EXTENSION_REFS: ix.route_filter_refs,
        }
        for route in ROUTE_KINDS
    },
    r.LISTENER_SET.kind: {
        ix.PARENT_GATEWAYS: ix.listener_set_parent_gateway,
        ix.NAMESPACE: ix.namespace_of,
        ix.CERTIFICATE_REFS: ix.listener_set_certificate_refs,
    },
    r.BACKEND_TLS_POLICY.kind: {
        ix.TARGET_SERVICES: ix.policy_target_services,
        ix.CERTIFICATE_REFS: ix.policy_ca_refs,
        ix.PARENT_GATEWAYS: ix.policy_ancestor_gateways,
    },
    **{
        policy.kind: {
            ix.TARGETS: ix.policy_targets,
            ix.PARENT_GATEWAYS: ix.policy_ancestor_gateways,
        }
        for policy in ATTACHED_POLICY_KINDS
    },
    # AuthPolicies also read Secrets and send checks to a Service
    r.AUTH_POLICY.kind: {
        ix.TARGETS: ix.policy_targets,
        ix.PARENT_GATEWAYS: ix.policy_ancestor_gateways,
        ix.CERTIFICATE_REFS: ix.auth_policy_secret_refs,
        ix.BACKEND_SERVICES: ix.auth_policy_backend_services,
        ix.JWKS_URLS: ix.auth_policy_jwks_urls,
    },
    # HTTPRouteFilters' error pages come from a Service
    r.HTTP_ROUTE_FILTER.kind: {ix.BACKEND_SERVICES: ix.route_filter_backend_services},
    r.ENDPOINT_SLICE.kind: {
        ix.SERVICE_NAME: ix.endpoint_slice_service,
        ix.POD_TARGETS: ix.endpoint_slice_pods,
    },
    r.INGRESS.kind: {
        ix.INGRESS_CLASS: ix.ingress_class_name,
        ix.BACKEND_SERVICES: ix.ingress_backend_services,
        ix.CERTIFICATE_REFS: ix.ingress_certificate_refs,
    },
}


@attrs.frozen
class Cache:
    # one store per kind ("Gateway", "Service", ...); a kind the server does not
    # serve (an older Gateway API bundle) has an empty store
    stores: Mapping[str, Store]
    # url -> the JWKS document AuthPolicies name by it (controller/jwks.py fills it)
    remote_jwks: dict[str, RemoteDocument] = attrs.field(factory=dict)

    @classmethod
    def with_stores(cls, stores: Mapping[str, Store]) -> Cache:
        """Add the indexes to the informers' stores (before they run).

        A kind the server does not serve gets an empty store with the same
        indexes, so readers never special-case it.
        """
        complete = dict(stores)
        for kind, indexers in INDEXES.items():
            store = complete.setdefault(kind, Store())
            for name, indexer in indexers.items():
                store.add_indexer(name, indexer)
        return cls(stores=complete)

    def store(self, kind: str) -> Store:
        # not `get(kind) or ...`: an empty Store is falsy
        return self.stores.get(kind, _EMPTY)

    def get(self, kind: str, key: str) -> Obj | None:
        return self.store(kind).get(key)

    def gateways_of_routes(self, index_name: str, value: str) -> set[str]:
        """The parent Gateways ("ns/name") of every route listed under `value` in the
        routes' index `index_name`, from what the indexes hold (one Service can be
        the backend of thousands of routes: their parentRefs are not parsed again);
        a route attached through a ListenerSet counts for the ListenerSet's Gateway."""
        gateways: set[str] = set()
        listener_sets: set[str] = set()
        for resource in ROUTE_KINDS:
            store = self.store(resource.kind)
            for key in store.index_keys(index_name, value):
                gateways.update(store.index_values(ix.PARENT_GATEWAYS, key))
                listener_sets.update(store.index_values(ix.PARENT_LISTENER_SETS, key))
        return gateways | self.gateways_of_listener_sets(listener_sets)

    def gateways_of_listener_sets(self, listener_sets: Iterable[str]) -> set[str]:
        """The Gateways ("ns/name") the cached ListenerSets `listener_sets` name."""
        store = self.store(r.LISTENER_SET.kind)
        return {g for ls in listener_sets for g in store.index_values(ix.PARENT_GATEWAYS, ls)}

    def snapshot_for_gateway(self, key: ObjectKey) -> Snapshot:
        gateway_key = key.namespaced_name
        gateway = self.get(r.GATEWAY.kind, gateway_key)
        listener_set_store = self.store(r.LISTENER_SET.kind)
        # the ListenerSets naming the Gateway; their routes are the Gateway's too, and
        # so are those naming a ListenerSet that is gone (its entries of ours are
        # removed by whichever Gateway's work item comes first)
        listener_sets = set(listener_set_store.index_keys(ix.PARENT_GATEWAYS, gateway_key))
        # route kind -> store key -> route; the indexes already hold which routes name
        # the Gateway and which Services their backendRefs name
        routes: dict[str, dict[str, Obj]] = {}
        services: set[str] = set()
        named_listener_sets: set[str] = set()
        for resource in ROUTE_KINDS:
            store = self.store(resource.kind)
            found = routes[resource.kind] = {}
            route_keys = set(store.index_keys(ix.PARENT_GATEWAYS, gateway_key))
            for ls in listener_sets.union(
                v
                for v in store.indexed_values(ix.PARENT_LISTENER_SETS)
                if v not in listener_set_store
            ):
                route_keys.update(store.index_keys(ix.PARENT_LISTENER_SETS, ls))
            for route_key in route_keys:
                route = store.get(route_key)
                if route is not None:
                    found[route_key] = route
                    services.update(store.index_values(ix.BACKEND_SERVICES, route_key))
                    named_listener_sets.update(
                        store.index_values(ix.PARENT_LISTENER_SETS, route_key)
                    )
        # the error pages' Services of the routes' HTTPRouteFilters are backends too
        route_filters = self._route_filters(routes[r.HTTP_ROUTE.kind])
        filter_store = self.store(r.HTTP_ROUTE_FILTER.kind)
        for filter_key in route_filters:
            services.update(filter_store.index_values(ix.BACKEND_SERVICES, filter_key))
        # AuthPolicies target no Service; their authorization Services are backends too
        auth_policies = self._attached_policies(r.AUTH_POLICY, key, routes, services)
        auth_store = self.store(r.AUTH_POLICY.kind)
        for policy_key in auth_policies:
            services.update(auth_store.index_values(ix.BACKEND_SERVICES, policy_key))
        policies = {
            object_key(p): p
            for s in services
            for p in self.store(r.BACKEND_TLS_POLICY.kind).by_index(ix.TARGET_SERVICES, s)
        }
        for p in self.store(r.BACKEND_TLS_POLICY.kind).by_index(ix.PARENT_GATEWAYS, gateway_key):
            policies[object_key(p)] = p
        material = set(ix.gateway_certificate_refs(gateway)) if gateway else set()
        for policy in policies.values():
            material.update(ix.policy_ca_refs(policy))
        for policy in auth_policies.values():
            material.update(ix.auth_policy_secret_refs(policy))
        for ls in listener_sets:
            material.update(listener_set_store.index_values(ix.CERTIFICATE_REFS, ls))
        return Snapshot(
            gateway_classes=self._all(r.GATEWAY_CLASS.kind),
            gateways={gateway_key: gateway} if gateway else {},
            http_routes=routes[r.HTTP_ROUTE.kind],
            grpc_routes=routes[r.GRPC_ROUTE.kind],
            tls_routes=routes[r.TLS_ROUTE.kind],
            tcp_routes=routes[r.TCP_ROUTE.kind],
            udp_routes=routes[r.UDP_ROUTE.kind],
            # those naming the Gateway, and those its routes name (translation tells which
            # route status entries are whose)
            listener_sets={
                k: o
                for k in listener_sets | named_listener_sets
                if (o := listener_set_store.get(k)) is not None
            },
            backend_tls_policies=policies,
            rate_limit_policies=self._attached_policies(r.RATE_LIMIT_POLICY, key, routes, services),
            health_check_policies=self._attached_policies(
                r.HEALTH_CHECK_POLICY, key, routes, services
            ),
            load_balancing_policies=self._attached_policies(
                r.LOAD_BALANCING_POLICY, key, routes, services
            ),
            auth_policies=auth_policies,
            remote_jwks={
                url: document
                for policy_key in auth_policies
                for url in auth_store.index_values(ix.JWKS_URLS, policy_key)
                if (document := self.remote_jwks.get(url)) is not None
            },
            waf_policies=self._attached_policies(r.WAF_POLICY, key, routes, services),
            route_filters=route_filters,
            reference_grants=self._all(r.REFERENCE_GRANT.kind),
            services={s: o for s in services if (o := self.get(r.SERVICE.kind, s))},
            endpoint_slices={
                s: tuple(self.store(r.ENDPOINT_SLICE.kind).by_index(ix.SERVICE_NAME, s))
                for s in services
            },
            secrets=self._material(material, "Secret", r.SECRET.kind),
            config_maps=self._material(material, "ConfigMap", r.CONFIG_MAP.kind),
            namespaces=self._all(r.NAMESPACE.kind),
            pods=self._backend_pods(services),
        )

    def _backend_pods(self, services: Iterable[str]) -> dict[str, Obj]:
        """The pods behind the Services' endpoints (none watched: no lookups)."""
        pods = self.store(r.POD.kind)
        if not len(pods):
            return {}
        slices = self.store(r.ENDPOINT_SLICE.kind)
        return {
            p: o
            for s in services
            for endpoint_slice in slices.by_index(ix.SERVICE_NAME, s)
            for p in ix.endpoint_slice_pods(endpoint_slice)
            if (o := pods.get(p)) is not None
        }

    def _attached_policies(
        self,
        resource: r.Resource,
        gateway: ObjectKey,
        routes: Mapping[str, Mapping[str, Obj]],
        services: Iterable[str],
    ) -> dict[str, Obj]:
        """The policies of one of our kinds that target the Gateway, one of its routes
        or a Service they send to, or carry an ancestor entry for it (which may have
        to go)."""
        store = self.store(resource.kind)
        if not len(store):
            return {}
        found = {
            object_key(p): p for p in store.by_index(ix.PARENT_GATEWAYS, gateway.namespaced_name)
        }
        targets = [str(gateway), *(str(ObjectKey.parse("Service", s)) for s in services)]
        for route_kind in POLICY_TARGET_ROUTE_KINDS:
            targets.extend(
                str(ObjectKey.parse(route_kind.kind, k)) for k in routes[route_kind.kind]
            )
        for target in targets:
            for p in store.by_index(ix.TARGETS, target):
                found[object_key(p)] = p
        return found

    def ingress_classes_of(self, requested: Iterable[str]) -> set[str]:
        """The IngressClasses Ingresses naming `requested` ("": none) belong to."""
        classes = set(requested)
        if "" in classes:
            classes.discard("")
            default = ingress.default_class(self._all(r.INGRESS_CLASS.kind))
            if default is not None:
                classes.add(default)
        return classes

    def snapshot_for_ingress_class(self, name: str) -> Snapshot:
        """What translating IngressClass `name` reads: its Ingresses (by index) and the
        Services, EndpointSlices (and pods behind them) and Secrets they name."""
        classes = self._all(r.INGRESS_CLASS.kind)
        store = self.store(r.INGRESS.kind)
        keys = set(store.index_keys(ix.INGRESS_CLASS, name))
        if ingress.default_class(classes) == name:
            keys.update(store.index_keys(ix.INGRESS_CLASS, ""))
        ingresses = {k: o for k in keys if (o := store.get(k)) is not None}
        services = {s for k in keys for s in store.index_values(ix.BACKEND_SERVICES, k)}
        material = {m for k in keys for m in store.index_values(ix.CERTIFICATE_REFS, k)}
        return Snapshot(
            ingress_classes=classes,
            ingresses=ingresses,
            services={s: o for s in services if (o := self.get(r.SERVICE.kind, s))},
            endpoint_slices={
                s: tuple(self.store(r.ENDPOINT_SLICE.kind).by_index(ix.SERVICE_NAME, s))
                for s in services
            },
            secrets=self._material(material, "Secret", r.SECRET.kind),
            namespaces=self._all(r.NAMESPACE.kind),
            pods=self._backend_pods(services),
        )

    def _route_filters(self, routes: Iterable[str]) -> dict[str, Obj]:
        """Our HTTPRouteFilters the HTTPRoutes `routes` name (none cached: no lookups)."""
        filters = self.store(r.HTTP_ROUTE_FILTER.kind)
        if not len(filters):
            return {}
        store = self.store(r.HTTP_ROUTE.kind)
        return {
            k: o
            for route_key in routes
            for k in store.index_values(ix.EXTENSION_REFS, route_key)
            if (o := filters.get(k)) is not None
        }

    def snapshot_for_class(self, name: str) -> Snapshot:
        gateway_class = self.get(r.GATEWAY_CLASS.kind, name)
        return Snapshot(gateway_classes={name: gateway_class} if gateway_class else {})

    def _all(self, kind: str) -> dict[str, Obj]:
        return {object_key(o): o for o in self.store(kind).list()}

    def _material(self, refs: set[str], ref_kind: str, store_kind: str) -> dict[str, Obj]:
        found = {}
        for ref in refs:
            kind, _, key = ref.partition("/")
            if kind == ref_kind and (obj := self.get(store_kind, key)) is not None:
                found[key] = obj
        return found


_EMPTY = Store()
