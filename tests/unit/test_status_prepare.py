"""prepare_status: the pure merge of desired status into stored status."""

from __future__ import annotations

import copy
from typing import Any

import attrs

from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import (
    Condition,
    ConditionStatus,
    GatewayAddress,
    GatewayClassStatus,
    GatewayStatus,
    IngressStatus,
    ListenerSetStatus,
    ListenerStatus,
    ParentReference,
    PolicyAncestorStatus,
    PolicyStatus,
    RouteGroupKind,
    RouteParentStatus,
    RouteStatus,
)
from agc_controller.core.timefmt import rfc3339
from agc_controller.status import (
    MAX_POLICY_ANCESTORS,
    MAX_ROUTE_PARENTS,
    dropped_entries,
    is_stale,
    prepare_status,
)

OURS = "example.com/agc"
OTHER = "other.example.org/gateway-controller"
GW = "gateway.networking.k8s.io"
T0 = "2024-05-01T10:00:00Z"
NOW = "2024-05-02T12:30:00Z"
LATER = "2024-05-03T08:00:00Z"
EPOCH = "1970-01-01T00:00:00Z"


def cond(
    type_: str,
    status: ConditionStatus = "True",
    *,
    reason: str = "Accepted",
    message: str = "Fine.",
    generation: int = 1,
) -> Condition:
    return Condition(
        type=type_, status=status, reason=reason, message=message, observed_generation=generation
    )


def stored_cond(type_: str, status: str, *, time: str = T0, **extra: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": extra.get("reason", "Accepted"),
        "message": extra.get("message", "Fine."),
        "observedGeneration": extra.get("generation", 1),
        "lastTransitionTime": time,
    }


def gateway(*conditions: Condition, listeners: tuple[ListenerStatus, ...] = ()) -> GatewayStatus:
    return GatewayStatus(
        namespace="ns", name="gw", conditions=conditions, listeners=listeners, addresses=()
    )


def obj(status: dict[str, Any] | None, *, generation: int = 1) -> dict[str, Any]:
    o: dict[str, Any] = {"metadata": {"name": "x", "namespace": "ns", "generation": generation}}
    if status is not None:
        o["status"] = status
    return o


def prepare(current: dict[str, Any], desired: Any, now: str = NOW) -> dict[str, Any] | None:
    return prepare_status(current, desired, controller_name=OURS, now=now)


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


# --- conditions -------------------------------------------------------------------------------


def test_transition_time_kept_when_status_unchanged_and_message_changed() -> None:
    current = obj({"conditions": [stored_cond("Accepted", "True", message="Old.")]})
    new = prepare(current, gateway(cond("Accepted", message="New.", generation=2)))
    assert new is not None
    [accepted] = new["conditions"]
    assert accepted["message"] == "New."
    assert accepted["observedGeneration"] == 2
    assert accepted["lastTransitionTime"] == T0


def test_transition_time_stamped_on_status_flip() -> None:
    current = obj({"conditions": [stored_cond("Accepted", "True")]})
    new = prepare(current, gateway(cond("Accepted", "False", reason="Invalid")))
    assert new is not None
    assert new["conditions"][0]["lastTransitionTime"] == NOW


def test_transition_time_stamped_on_new_condition() -> None:
    current = obj({"conditions": [stored_cond("Accepted", "True")]})
    new = prepare(current, gateway(cond("Accepted"), cond("Programmed", reason="Programmed")))
    assert new is not None
    times = {c["type"]: c["lastTransitionTime"] for c in new["conditions"]}
    assert times == {"Accepted": T0, "Programmed": NOW}


def test_crd_pending_default_is_replaced_and_its_epoch_time_never_kept() -> None:
    pending = {
        "conditions": [
            stored_cond("Accepted", "Unknown", time=EPOCH, reason="Pending"),
            stored_cond("Programmed", "Unknown", time=EPOCH, reason="Pending"),
        ]
    }
    # Programmed stays Unknown: no status flip, yet the epoch is a placeholder
    desired = gateway(cond("Accepted"), cond("Programmed", "Unknown", reason="Pending"))
    new = prepare(obj(pending), desired)
    assert new is not None
    conditions = by_type(new["conditions"])
    assert conditions["Accepted"]["status"] == "True"
    assert conditions["Accepted"]["lastTransitionTime"] == NOW
    assert conditions["Programmed"]["lastTransitionTime"] == NOW


def test_conditions_not_desired_are_removed_from_gateway() -> None:
    current = obj({"conditions": [stored_cond("Accepted", "True"), stored_cond("Extra", "True")]})
    new = prepare(current, gateway(cond("Accepted")))
    assert new is not None
    assert [c["type"] for c in new["conditions"]] == ["Accepted"]


def test_no_change_gives_none_even_at_a_later_time() -> None:
    desired = gateway(cond("Accepted"), cond("Programmed", "False", reason="Invalid"))
    first = prepare(obj(None), desired)
    assert first is not None
    assert prepare(obj(first), desired, now=LATER) is None


def test_observed_generation_alone_is_a_change() -> None:
    first = prepare(obj(None), gateway(cond("Accepted", generation=1)))
    assert first is not None
    second = prepare(obj(first, generation=2), gateway(cond("Accepted", generation=2)), LATER)
    assert second is not None
    assert second["conditions"][0]["observedGeneration"] == 2
    assert second["conditions"][0]["lastTransitionTime"] == NOW


# --- Gateway and GatewayClass -----------------------------------------------------------------


def listener(name: str, *conditions: Condition, attached: int = 0) -> ListenerStatus:
    return ListenerStatus(
        name=name,
        supported_kinds=(RouteGroupKind("HTTPRoute"),),
        attached_routes=attached,
        conditions=conditions,
    )


def test_listener_conditions_merged_by_listener_name() -> None:
    current = obj(
        {
            "conditions": [stored_cond("Accepted", "True")],
            "listeners": [
                {
                    "name": "http",
                    "supportedKinds": [{"group": GW, "kind": "HTTPRoute"}],
                    "attachedRoutes": 1,
                    "conditions": [stored_cond("Programmed", "True", time=T0)],
                },
                {
                    "name": "https",
                    "supportedKinds": [{"group": GW, "kind": "HTTPRoute"}],
                    "attachedRoutes": 0,
                    "conditions": [stored_cond("Programmed", "True", time="2024-02-02T00:00:00Z")],
                },
                {"name": "gone", "attachedRoutes": 0, "conditions": []},
            ],
        }
    )
    # listeners in another order; https flips, http does not
    desired = gateway(
        cond("Accepted"),
        listeners=(
            listener("https", cond("Programmed", "False", reason="Invalid")),
            listener("http", cond("Programmed", reason="Programmed"), attached=3),
        ),
    )
    new = prepare(current, desired)
    assert new is not None
    assert [item["name"] for item in new["listeners"]] == ["https", "http"]
    https, http = new["listeners"]
    assert https["conditions"][0]["lastTransitionTime"] == NOW
    assert http["conditions"][0]["lastTransitionTime"] == T0
    assert http["attachedRoutes"] == 3
    assert http["supportedKinds"] == [{"group": GW, "kind": "HTTPRoute"}]


def test_gateway_addresses_replaced_and_unmodelled_fields_kept() -> None:
    current = obj(
        {
            "conditions": [stored_cond("Accepted", "True")],
            "addresses": [{"type": "IPAddress", "value": "10.0.0.1"}],
            # a field of a newer API the model knows nothing of
            "futureCount": 2,
        }
    )
    with_address = GatewayStatus(
        namespace="ns",
        name="gw",
        conditions=(cond("Accepted"),),
        listeners=(),
        addresses=(GatewayAddress("Hostname", "lb.example.com"),),
    )
    new = prepare(current, with_address)
    assert new is not None
    assert new["addresses"] == [{"type": "Hostname", "value": "lb.example.com"}]
    assert new["futureCount"] == 2
    without = prepare(current, gateway(cond("Accepted")))
    assert without is not None
    assert "addresses" not in without
    assert "listeners" not in without


def test_gateway_attached_listener_sets_written_and_removed_as_desired() -> None:
    current = obj({"conditions": [stored_cond("Accepted", "True")], "attachedListenerSets": 2})
    counted = attrs.evolve(gateway(cond("Accepted")), attached_listener_sets=0)
    new = prepare(current, counted)
    assert new is not None
    assert new["attachedListenerSets"] == 0
    # a Gateway that no longer allows ListenerSets (None) drops the field
    dropped = prepare(current, gateway(cond("Accepted")))
    assert dropped is not None
    assert "attachedListenerSets" not in dropped


def test_listener_set_status_like_a_gateways_without_addresses() -> None:
    current = obj(
        {
            "conditions": [
                stored_cond("Accepted", "True"),
                {**stored_cond("Programmed", "Unknown"), "lastTransitionTime": EPOCH},
            ],
            "listeners": [
                {
                    "name": "a",
                    "attachedRoutes": 0,
                    "supportedKinds": [],
                    "conditions": [stored_cond("Accepted", "True")],
                }
            ],
        }
    )
    desired = ListenerSetStatus(
        namespace="ns",
        name="ls",
        conditions=(cond("Accepted"), cond("Programmed")),
        listeners=(
            ListenerStatus(
                name="a",
                supported_kinds=(RouteGroupKind(kind="HTTPRoute"),),
                attached_routes=1,
                conditions=(cond("Accepted"), cond("Programmed")),
            ),
        ),
    )
    new = prepare(current, desired)
    assert new is not None
    assert [c["type"] for c in new["conditions"]] == ["Accepted", "Programmed"]
    # Accepted kept its time; the Pending placeholder never survives a write
    assert new["conditions"][0]["lastTransitionTime"] == T0
    assert new["conditions"][1]["lastTransitionTime"] == NOW
    assert new["listeners"][0]["attachedRoutes"] == 1
    assert new["listeners"][0]["conditions"][0]["lastTransitionTime"] == T0
    assert "addresses" not in new
    assert prepare({**current, "status": new}, desired) is None


def test_gateway_class_supported_features_are_name_objects_sorted() -> None:
    desired = GatewayClassStatus(
        name="agc",
        conditions=(cond("Accepted"),),
        supported_features=("HTTPRouteQueryParamMatching", "Gateway", "HTTPRoute", "Gateway"),
    )
    new = prepare(obj(None), desired)
    assert new is not None
    assert new["supportedFeatures"] == [
        {"name": "Gateway"},
        {"name": "HTTPRoute"},
        {"name": "HTTPRouteQueryParamMatching"},
    ]
    assert prepare(obj(new), desired, now=LATER) is None
    no_features = GatewayClassStatus(
        name="agc", conditions=(cond("Accepted"),), supported_features=()
    )
    cleared = prepare(obj(new), no_features)
    assert cleared is not None
    assert "supportedFeatures" not in cleared


# --- route parents / policy ancestors ---------------------------------------------------------

GW_A = ObjectKey("Gateway", "ns", "a")
GW_B = ObjectKey("Gateway", "infra", "b")


def ref(gw: ObjectKey, *, section: str | None = None) -> ParentReference:
    return ParentReference(name=gw.name, namespace=gw.namespace, section_name=section)


def stored_entry(
    gw_ref: dict[str, Any], controller: str, *conditions: dict[str, Any]
) -> dict[str, Any]:
    return {"parentRef": gw_ref, "controllerName": controller, "conditions": list(conditions)}


def api_ref(name: str, namespace: str | None = None, **more: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"group": GW, "kind": "Gateway", "name": name, **more}
    if namespace is not None:
        r["namespace"] = namespace
    return r


def route(gw: ObjectKey, *parents: RouteParentStatus) -> RouteStatus:
    return RouteStatus(kind="HTTPRoute", namespace="ns", name="r", gateway=gw, parents=parents)


def parent(parent_ref: ParentReference, *conditions: Condition) -> RouteParentStatus:
    return RouteParentStatus(parent_ref=parent_ref, conditions=conditions or (cond("Accepted"),))


def test_route_other_controllers_entries_untouched_and_in_order() -> None:
    theirs_first = stored_entry(api_ref("a", "ns"), OTHER, stored_cond("Accepted", "False"))
    theirs_last = stored_entry(api_ref("x", "ns"), OTHER, stored_cond("Accepted", "True"))
    current = obj({"parents": [theirs_first, theirs_last]})
    snapshot = copy.deepcopy(current)
    new = prepare(current, route(GW_A, parent(ref(GW_A))))
    assert new is not None
    assert new["parents"][:2] == [theirs_first, theirs_last]
    assert new["parents"][2]["controllerName"] == OURS
    assert current == snapshot, "the stored object must not be modified"


def test_route_ours_for_other_gateways_untouched() -> None:
    ours_b = stored_entry(api_ref("b", "infra"), OURS, stored_cond("Accepted", "True"))
    current = obj({"parents": [ours_b]})
    new = prepare(current, route(GW_A, parent(ref(GW_A))))
    assert new is not None
    assert new["parents"][0] == ours_b
    assert new["parents"][1]["parentRef"] == api_ref("a", "ns")


def test_route_ours_for_this_gateway_replaced_in_place_keeping_times() -> None:
    theirs = stored_entry(api_ref("a", "ns"), OTHER, stored_cond("Accepted", "True"))
    ours_http = stored_entry(
        api_ref("a", "ns", sectionName="http"), OURS, stored_cond("Accepted", "True")
    )
    ours_https = stored_entry(
        api_ref("a", "ns", sectionName="https"), OURS, stored_cond("Accepted", "True")
    )
    ours_b = stored_entry(api_ref("b", "infra"), OURS, stored_cond("Accepted", "True"))
    current = obj({"parents": [ours_http, theirs, ours_https, ours_b]})
    desired = route(
        GW_A,
        parent(ref(GW_A, section="http"), cond("Accepted", message="Still.")),
        parent(
            ref(GW_A, section="https"), cond("Accepted", "False", reason="NotAllowedByListeners")
        ),
    )
    new = prepare(current, desired)
    assert new is not None
    parents = new["parents"]
    assert [p["parentRef"].get("sectionName") for p in parents] == ["http", "https", None, None]
    assert parents[2:] == [theirs, ours_b]
    assert parents[0]["conditions"][0]["lastTransitionTime"] == T0  # status unchanged
    assert parents[0]["conditions"][0]["message"] == "Still."
    assert parents[1]["conditions"][0]["lastTransitionTime"] == NOW  # flipped


def test_route_empty_desired_removes_ours_for_this_gateway_only() -> None:
    theirs = stored_entry(api_ref("a", "ns"), OTHER, stored_cond("Accepted", "True"))
    ours_a = stored_entry(api_ref("a", "ns"), OURS, stored_cond("Accepted", "True"))
    ours_b = stored_entry(api_ref("b", "infra"), OURS, stored_cond("Accepted", "True"))
    new = prepare(obj({"parents": [theirs, ours_a, ours_b]}), route(GW_A))
    assert new is not None
    assert new["parents"] == [theirs, ours_b]


def test_route_listener_set_entries_owned_only_when_listed() -> None:
    ls_mine = ObjectKey("ListenerSet", "apps", "mine")
    ls_other = ObjectKey("ListenerSet", "apps", "other")
    mine = stored_entry(
        {"group": GW, "kind": "ListenerSet", "name": "mine", "namespace": "apps"},
        OURS,
        stored_cond("Accepted", "True"),
    )
    other = stored_entry(
        {"group": GW, "kind": "ListenerSet", "name": "other", "namespace": "apps"},
        OURS,
        stored_cond("Accepted", "True"),
    )
    current = obj({"parents": [mine, other]})
    # a Gateway's work item that decides `mine` but not `other`: mine is replaced, other kept
    desired = attrs.evolve(
        route(
            GW_A,
            parent(
                ParentReference(name="mine", namespace="apps", kind="ListenerSet"),
                cond("Accepted", "False", reason="NoMatchingParent"),
            ),
        ),
        listener_sets=(ls_mine,),
    )
    new = prepare(current, desired)
    assert new is not None
    assert [p["parentRef"]["name"] for p in new["parents"]] == ["mine", "other"]
    assert new["parents"][0]["conditions"][0]["reason"] == "NoMatchingParent"
    assert new["parents"][1] == other
    # without the ListenerSet listed, its entry is not this work item's to touch
    assert prepare(current, route(GW_A)) is None
    # listed with nothing desired: removed
    cleared = prepare(current, attrs.evolve(route(GW_A), listener_sets=(ls_mine, ls_other)))
    assert cleared == {"parents": []}


def test_route_removing_the_last_entry_writes_an_empty_list() -> None:
    ours_a = stored_entry(api_ref("a", "ns"), OURS, stored_cond("Accepted", "True"))
    assert prepare(obj({"parents": [ours_a]}), route(GW_A)) == {"parents": []}


def test_route_nothing_stored_nothing_desired_is_no_write() -> None:
    assert prepare(obj(None), route(GW_A)) is None
    assert prepare(obj({"parents": []}), route(GW_A)) is None


def test_route_namespaceless_parent_ref_in_stored_status_matched() -> None:
    # written without namespace (by an older writer): it means the route's namespace
    ours_a = stored_entry({"name": "a"}, OURS, stored_cond("Accepted", "True"))
    new = prepare(obj({"parents": [ours_a]}), route(GW_A, parent(ref(GW_A))))
    assert new is not None
    [entry] = new["parents"]
    assert entry["parentRef"] == api_ref("a", "ns")
    assert entry["conditions"][0]["lastTransitionTime"] == T0


def test_route_same_name_in_other_namespace_is_another_gateway() -> None:
    ours_elsewhere = stored_entry(api_ref("a", "elsewhere"), OURS, stored_cond("Accepted", "True"))
    new = prepare(obj({"parents": [ours_elsewhere]}), route(GW_A))
    assert new is None


def test_route_no_change_gives_none() -> None:
    theirs = stored_entry(api_ref("a", "ns"), OTHER, stored_cond("Accepted", "True"))
    desired = route(GW_A, parent(ref(GW_A)))
    first = prepare(obj({"parents": [theirs]}), desired)
    assert first is not None
    assert prepare(obj(first), desired, now=LATER) is None


def test_route_alternating_gateways_converge_without_reordering() -> None:
    # two work items (gateways a and b) writing in turns must reach a fixed point
    desired_a = route(GW_A, parent(ref(GW_A)))
    desired_b = route(GW_B, parent(ref(GW_B)))
    status = prepare(obj(None), desired_a)
    assert status is not None
    status = prepare(obj(status), desired_b)
    assert status is not None
    assert prepare(obj(status), desired_a, now=LATER) is None
    assert prepare(obj(status), desired_b, now=LATER) is None


def test_route_parents_never_exceed_the_limit_dropping_ours() -> None:
    others = [
        stored_entry(api_ref(f"g{i}", "ns"), OTHER, stored_cond("Accepted", "True"))
        for i in range(MAX_ROUTE_PARENTS - 2)
    ]
    desired = route(GW_A, *(parent(ref(GW_A, section=f"l{i}")) for i in range(5)))
    current = obj({"parents": others})
    new = prepare(current, desired)
    assert new is not None
    assert len(new["parents"]) == MAX_ROUTE_PARENTS
    assert new["parents"][: len(others)] == others
    assert [p["parentRef"]["sectionName"] for p in new["parents"][len(others) :]] == ["l0", "l1"]
    dropped = dropped_entries(current, desired, controller_name=OURS)
    assert [r.section_name for r in dropped] == ["l2", "l3", "l4"]


def test_route_not_over_limit_drops_nothing() -> None:
    desired = route(GW_A, parent(ref(GW_A)))
    assert dropped_entries(obj(None), desired, controller_name=OURS) == ()


def test_policy_ancestors_merged_with_ancestor_ref_and_limit() -> None:
    theirs = {
        "ancestorRef": api_ref("a", "ns"),
        "controllerName": OTHER,
        "conditions": [stored_cond("Accepted", "True")],
    }
    ours_a = {
        "ancestorRef": api_ref("a", "ns"),
        "controllerName": OURS,
        "conditions": [stored_cond("Accepted", "True")],
    }
    desired = PolicyStatus(
        kind="BackendTLSPolicy",
        namespace="ns",
        name="p",
        gateway=GW_A,
        ancestors=tuple(
            PolicyAncestorStatus(
                ancestor_ref=ref(GW_A, section=f"l{i}"), conditions=(cond("Accepted"),)
            )
            for i in range(MAX_POLICY_ANCESTORS + 3)
        ),
    )
    current = obj({"ancestors": [theirs, ours_a]})
    new = prepare(current, desired)
    assert new is not None
    assert len(new["ancestors"]) == MAX_POLICY_ANCESTORS
    assert new["ancestors"][0] == theirs
    assert all("ancestorRef" in a and "parentRef" not in a for a in new["ancestors"])
    assert len(dropped_entries(current, desired, controller_name=OURS)) == 4


# --- staleness and time -----------------------------------------------------------------------


def test_stale_when_stored_generation_is_newer_than_any_desired_condition() -> None:
    desired = gateway(
        cond("Accepted", generation=3),
        listeners=(listener("http", cond("Programmed", generation=2)),),
    )
    assert is_stale(obj(None, generation=3), desired)
    assert not is_stale(obj(None, generation=2), desired)
    assert not is_stale(obj(None, generation=5), route(GW_A)), "nothing to compare: not stale"


def test_rfc3339_is_utc_seconds_with_z() -> None:
    assert rfc3339(0) == EPOCH
    assert rfc3339(1714557600.75) == "2024-05-01T10:00:00Z"


def test_ingress_status_is_its_addresses_and_keeps_the_rest() -> None:
    desired = IngressStatus(
        namespace="shop",
        name="web",
        addresses=(GatewayAddress("IPAddress", "10.0.0.1"), GatewayAddress("Hostname", "lb.io")),
    )
    stored: dict[str, Any] = {"metadata": {"generation": 4}, "status": {"loadBalancer": {}}}
    new = prepare(stored, desired)
    assert new == {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}, {"hostname": "lb.io"}]}}
    # written already: nothing to do; Ingress has no conditions, so never stale
    assert prepare({**stored, "status": new}, desired) is None
    assert not is_stale(stored, desired)
    # not programmed: no address, other status fields kept
    unaddressed = IngressStatus(namespace="shop", name="web", addresses=())
    kept = {"metadata": {}, "status": {**new, "other": 1}}
    assert prepare(kept, unaddressed) == {"loadBalancer": {}, "other": 1}
