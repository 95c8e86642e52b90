"""The children one Gateway contributes to an Application Gateway.

The builder modules (one per child collection) add REST JSON children to a
`Collector`; the frozen `GatewayChildren` is what merge.py combines with the
live Application Gateway. Children are ARM REST bodies (camelCase), not SDK
models: the GET → merge → PUT round trip must keep every property, including
ones newer than the SDK, byte for byte.

Invariants: within a collection, names are unique (adding an equal child twice
is a no-op; adding a different child under a taken name is a bug and raises);
`frozen()` sorts children by name, so equal models build equal children.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from agc_controller.core.keys import ObjectKey
from agc_controller.translate.model import BackendHealth, Certificate, Endpoint, LoadBalancing

Json = dict[str, Any]

# every collection the controller writes, in the order ARM documents them
COLLECTIONS = (
    "frontendPorts",
    "sslCertificates",
    "trustedClientCertificates",
    "sslProfiles",
    "trustedRootCertificates",
    "backendAddressPools",
    "probes",
    "backendHttpSettingsCollection",
    "httpListeners",
    "rewriteRuleSets",
    "redirectConfigurations",
    "urlPathMaps",
    "requestRoutingRules",
)
# collections whose content ARM never returns in full (secrets, or data we name by digest)
NAMED_BY_DIGEST = frozenset(
    {"sslCertificates", "trustedClientCertificates", "trustedRootCertificates"}
)
# the sort key of a request routing rule among every Gateway's rules on one Application Gateway
RuleOrder = tuple[object, ...]


@attrs.frozen
class GatewayChildren:
    gateway: ObjectKey
    # collection -> children (REST JSON), sorted by name
    collections: Mapping[str, tuple[Json, ...]]
    # request routing rule name -> its precedence among all rules (priorities come from it)
    rule_order: Mapping[str, RuleOrder]
    # sslCertificate name -> the material to upload if ARM does not have it yet
    certificates: Mapping[str, Certificate] = attrs.field(factory=dict, repr=False)
    # Gateway listener name -> why (part of) it is not programmed as asked
    listener_problems: Mapping[str, str] = attrs.field(factory=dict)
    # the WAF policies we own that the children refer to: name -> resource body
    firewall_policies: Mapping[str, Json] = attrs.field(factory=dict)
    # (collection, name) of children not ours the children refer to: they must be on
    # the Application Gateway (translate/graph/appgw.py), sorted
    external: tuple[tuple[str, str], ...] = ()
    # why nothing of this Gateway can be programmed (then `collections` is empty)
    problem: str | None = None


@attrs.define
class Collector:
    gateway: ObjectKey
    # the Application Gateway's resource ID (children refer to each other by ID)
    gateway_id: str
    # backend name -> its endpoints (the model's table)
    endpoints: Mapping[str, tuple[Endpoint, ...]] = attrs.field(factory=dict)
    # backend name -> its HealthCheckPolicy's probes, if one governs it
    health_checks: Mapping[str, BackendHealth] = attrs.field(factory=dict)
    # backend name -> its BackendLoadBalancingPolicy (connection draining), if one governs it
    load_balancing: Mapping[str, LoadBalancing] = attrs.field(factory=dict)
    # the Application Gateway's location and SKU tier (WAF policies need WAF_v2)
    location: str = ""
    sku_tier: str = ""
    _children: dict[str, dict[str, Json]] = attrs.field(factory=dict)
    rule_order: dict[str, RuleOrder] = attrs.field(factory=dict)
    certificates: dict[str, Certificate] = attrs.field(factory=dict)
    listener_problems: dict[str, str] = attrs.field(factory=dict)
    firewall_policies: dict[str, Json] = attrs.field(factory=dict)
    external: set[tuple[str, str]] = attrs.field(factory=set)

    def add(self, collection: str, name: str, properties: Json) -> Json:
        """Add a child (idempotent for an equal child); returns its reference."""
        child = {"name": name, "properties": properties}
        taken = self._children.setdefault(collection, {})
        if name in taken and taken[name] != child:
            raise ValueError(f"two different {collection} children named {name}")
        taken[name] = child
        return self.ref(collection, name)

    def external_ref(self, collection: str, name: str) -> Json:
        """A reference to a child someone else put on the Application Gateway (merge.py
        refuses the Gateway if it is not there)."""
        self.external.add((collection, name))
        return self.ref(collection, name)

    def ref(self, collection: str, name: str) -> Json:
        return {"id": f"{self.gateway_id}/{collection}/{name}"}

    def set_property(self, ref: Json, key: str, value: Json) -> None:
        """Set one property of the child `ref` (added before) names."""
        collection, name = ref["id"].removeprefix(f"{self.gateway_id}/").split("/")
        self._children[collection][name]["properties"][key] = value

    def problem(self, listener: str, text: str) -> None:
        """Record a listener problem; the first one per listener is the one reported."""
        self.listener_problems.setdefault(listener, text)

    def frozen(self) -> GatewayChildren:
        return GatewayChildren(
            gateway=self.gateway,
            collections={
                collection: tuple(children[n] for n in sorted(children))
                for collection, children in sorted(self._children.items())
            },
            rule_order=dict(self.rule_order),
            certificates=dict(self.certificates),
            listener_problems=dict(sorted(self.listener_problems.items())),
            firewall_policies=dict(sorted(self.firewall_policies.items())),
            external=tuple(sorted(self.external)),
        )


def properties(child: Mapping[str, Any]) -> Mapping[str, Any]:
    props: Mapping[str, Any] = child.get("properties") or {}
    return props


class RuleProblem(ValueError):
    """One model rule cannot be expressed; it is left out and its listener reports why."""
