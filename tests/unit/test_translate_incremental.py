"""Incremental translation equals translation from scratch, after every step of
random edits over every golden input; so do the local data plane's state parts
built by difference (StateParts) and from scratch, and so do the parts of the
in-cluster data plane's shards (ShardedState), read back as an agent reads them.

The edits replace objects the way the informer cache does (a new dict, never a
mutation): a value changed somewhere in an object (a string, a number, a list
shortened, a key removed), an object deleted or restored, or an unchanged copy
(a status write or resync: the same content under a new identity). After each
edit, every Gateway is translated with the memo its previous translations left
behind and without one; the two results must be equal.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agc_controller.dataplane.config import decode_shard
from agc_controller.dataplane.shards import ShardedState
from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.providers.local.dynamic import StateParts, build_state, encoded_parts
from agc_controller.translate import (
    REBUILDS_PER_STEP,
    GatewayTranslation,
    Memo,
    Snapshot,
    TranslateSettings,
    translate_gateway,
    translation_steps,
)
from agc_controller.translate.memo import WHOLE, changed_inputs, recording
from agc_controller.translate.model import LoadBalancer
from agc_controller.translate.settings import CORE_FEATURES

CASES = Path(__file__).parents[1] / "golden" / "cases"
SETTINGS = TranslateSettings(
    controller_name="agc-controller.io/gateway-controller",
    supported_features=CORE_FEATURES
    | {"HTTPRouteQueryParamMatching", "HTTPRouteMethodMatching", "BackendTLSPolicy"},
)
LOCAL_SETTINGS = local_translate_settings(SETTINGS.controller_name)
STEPS = 40
Obj = dict[str, Any]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value under `spec`, labels, data, endpoints and ports."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _leaves(item, (*path, index))
    return found


_EDITABLE = ("spec", "endpoints", "ports", "data")


def _edit(obj: Obj, rng: random.Random) -> Obj:
    """A copy of `obj` with one value changed, of the same type (or a key removed)."""
    new = copy.deepcopy(obj)
    paths = [
        p
        for p in _leaves(new)
        if p[0] in _EDITABLE or p[:2] in {("metadata", "labels"), ("metadata", "annotations")}
    ]
    if not paths:
        new["metadata"].setdefault("labels", {})["edited"] = "yes"
        return new
    path = rng.choice(paths)
    parent = new
    for part in path[:-1]:
        parent = parent[part]
    value = parent[path[-1]]
    if isinstance(value, bool):
        parent[path[-1]] = not value
    elif isinstance(value, int):
        parent[path[-1]] = value + rng.choice((1, -1, 100))
    elif isinstance(value, str):
        parent[path[-1]] = rng.choice((value + "x", value[:-1], "/" + value, value.upper()))
    elif isinstance(value, list) and value:
        value.pop(rng.randrange(len(value)))
    elif isinstance(parent, dict):
        del parent[path[-1]]
    if "generation" in new["metadata"]:
        new["metadata"]["generation"] += 1
    return new


def _check_parts(parts: StateParts, model: LoadBalancer | None, where: str) -> None:
    """The parts built by difference equal those of a from-scratch build of `model`."""
    if model is None:
        return
    document, needs = build_state(model)
    assert parts.build(model) == (encoded_parts(document), needs), where


def _check_shards(sharded: ShardedState, model: LoadBalancer | None, where: str) -> None:
    """The shards built by difference, decoded as an agent decodes them, hold the
    parts of a from-scratch build of `model`, each once (in the shard its name
    goes to), under the digests the manifest lists; no empty shard is listed."""
    if model is None:
        return
    document, needs = build_state(model)
    manifest = sharded.build(model)
    assert manifest.needs == needs, where
    parts: dict[str, bytes] = {}
    for shard, listed in manifest.shards.items():
        read = decode_shard({"data": sharded.data(shard)}, shard)
        assert (read.digest, bool(read.parts)) == (listed, True), where
        parts |= read.parts
    assert parts == encoded_parts(document), where


def _gateways(objects: list[Obj]) -> list[str]:
    return sorted(
        f"{o['metadata'].get('namespace', 'default')}/{o['metadata']['name']}"
        for o in objects
        if o.get("kind") == "Gateway"
    )


@pytest.mark.parametrize(
    "case", sorted(CASES.glob("*.in.yaml")), ids=lambda p: p.name.removesuffix(".in.yaml")
)
def test_incremental_equals_from_scratch(case: Path) -> None:
    rng = random.Random(case.name)
    objects: list[Obj] = [doc for doc in yaml.safe_load_all(case.read_text()) if doc]
    deleted: list[Obj] = []
    keys = _gateways(objects)
    memos = {key: Memo() for key in keys}
    parts = {key: StateParts() for key in keys}
    shards = {key: ShardedState() for key in keys}
    # what the local data plane refuses never reaches its state (local- cases test it)
    settings = LOCAL_SETTINGS if case.name.startswith("local-") else SETTINGS
    for step in range(STEPS + 1):
        snapshot = Snapshot.from_objects(objects)
        for key in keys:
            incremental = translate_gateway(snapshot, key, settings, memo=memos[key])
            scratch = translate_gateway(snapshot, key, settings)
            assert incremental == scratch, f"{case.name}: {key} differs after step {step}"
            _check_parts(parts[key], incremental.load_balancer, f"{case.name}: {key} {step}")
            _check_shards(shards[key], incremental.load_balancer, f"{case.name}: {key} {step}")
        action = rng.random()
        index = rng.randrange(len(objects))
        if action < 0.6:
            objects[index] = _edit(objects[index], rng)
        elif action < 0.75:
            objects[index] = copy.deepcopy(objects[index])
        elif action < 0.9 and len(objects) > 1:
            deleted.append(objects.pop(index))
        elif deleted:
            objects.append(deleted.pop(rng.randrange(len(deleted))))


def test_reads_are_recorded_and_changes_found_by_identity() -> None:
    service = {"kind": "Service", "metadata": {"name": "svc", "namespace": "ns"}, "spec": {}}
    snapshot = Snapshot.from_objects([service])
    view, reads = recording(snapshot)
    assert view.services.get("ns/svc") is service
    assert view.services.get("ns/missing") is None
    assert reads() == {("services", "ns/svc"), ("services", "ns/missing")}
    assert changed_inputs(snapshot, Snapshot.from_objects([service])) == frozenset()
    # the same content under a new identity counts as a change: the cache replaced it
    copied = Snapshot.from_objects([copy.deepcopy(service)])
    assert changed_inputs(snapshot, copied) == {("services", "ns/svc"), ("services", WHOLE)}
    # something appearing where nothing was read counts too
    other = {"kind": "Service", "metadata": {"name": "missing", "namespace": "ns"}}
    assert changed_inputs(snapshot, Snapshot.from_objects([service, other])) == {
        ("services", "ns/missing"),
        ("services", WHOLE),
    }


HOSTNAMES = (
    "a.example.com",
    "b.example.com",
    "x.a.example.com",
    "*.example.com",
    "*.a.example.com",
    "*.com",
    "foo.org",
)


def _synthetic_route(rng: random.Random, index: int) -> Obj:
    hostnames = rng.sample(HOSTNAMES, rng.randrange(0, 3))
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": f"r{index}",
            "namespace": "default",
            "generation": 1,
            "creationTimestamp": f"2026-01-01T00:00:{index % 60:02d}Z",
        },
        "spec": {
            "parentRefs": [{"name": "gw", "sectionName": rng.choice(["any", "wild", "other"])}],
            "hostnames": hostnames,
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": f"/{rng.randrange(4)}"}}],
                    "backendRefs": [{"name": "svc", "port": 80}],
                }
            ],
        },
    }


def _gateway_objects() -> list[Obj]:
    """A class, a Gateway with listeners sharing a port, and a Service."""
    return [
        {
            "kind": "GatewayClass",
            "metadata": {"name": "agc"},
            "spec": {"controllerName": SETTINGS.controller_name},
        },
        {
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default", "generation": 1},
            "spec": {
                "gatewayClassName": "agc",
                "listeners": [
                    {"name": "any", "port": 80, "protocol": "HTTP"},
                    {"name": "wild", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"},
                    {"name": "other", "port": 8080, "protocol": "HTTP"},
                ],
            },
        },
        {
            "kind": "Service",
            "metadata": {"name": "svc", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]},
        },
    ]


def test_host_tables_follow_hostname_edits() -> None:
    """Exact, wildcard and catch-all hostnames moving between routes and listeners
    that share a port (listener isolation), checked after every edit."""
    rng = random.Random(7)
    base = _gateway_objects()
    routes = {i: _synthetic_route(rng, i) for i in range(12)}
    memo, parts, shards = Memo(), StateParts(), ShardedState()
    for step in range(300):
        snapshot = Snapshot.from_objects(base + list(routes.values()))
        incremental = translate_gateway(snapshot, "default/gw", SETTINGS, memo=memo)
        assert incremental == translate_gateway(snapshot, "default/gw", SETTINGS), step
        _check_parts(parts, incremental.load_balancer, str(step))
        _check_shards(shards, incremental.load_balancer, str(step))
        index = rng.randrange(16)
        if index in routes and rng.random() < 0.2:
            del routes[index]
        else:
            routes[index] = _synthetic_route(rng, index)


def test_backends_follow_the_order_of_upstream_tls_settings() -> None:
    """An upstream TLS setting that sorts first coming or going moves every other
    one's index (`@agc_tls_<n>`): the backends using them must be sent again."""
    case = CASES / "backendtlspolicy-mirror-and-unused.in.yaml"
    objects: list[Obj] = [doc for doc in yaml.safe_load_all(case.read_text()) if doc]
    memo, parts = Memo(), StateParts()

    def check() -> None:
        model = translate_gateway(
            Snapshot.from_objects(objects), "default/gw", SETTINGS, memo=memo
        ).load_balancer
        _check_parts(parts, model, "tls")

    check()
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "aaa", "namespace": "default"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]},
    }
    policy = copy.deepcopy(next(o for o in objects if o["metadata"]["name"] == "secure-tls"))
    policy["metadata"]["name"] = "aaa-tls"
    policy["spec"]["targetRefs"] = [{"group": "", "kind": "Service", "name": "aaa"}]
    policy["spec"]["validation"]["hostname"] = "aaa.example.com"
    route = copy.deepcopy(next(o for o in objects if o.get("kind") == "HTTPRoute"))
    route["metadata"]["name"] = "aaa"
    route["spec"]["rules"] = [{"backendRefs": [{"name": "aaa", "port": 443}]}]
    route["spec"]["hostnames"] = ["aaa.example.com"]
    objects += [service, policy, route]
    check()
    objects.remove(route)  # the policies stay as they were: only the set of settings moves
    check()


def test_translation_pauses_while_rebuilding_and_may_be_abandoned() -> None:
    """A bulk of new routes is translated in steps (one pause per REBUILDS_PER_STEP
    rebuilt entries, one more once all are there); steps abandoned at a pause leave
    the memo as good as before, and an unchanged Gateway rebuilds nothing."""
    rng = random.Random(3)
    routes = [_synthetic_route(rng, i) for i in range(100)]
    snapshot = Snapshot.from_objects(_gateway_objects() + routes)
    expected = translate_gateway(snapshot, "default/gw", SETTINGS)
    memo = Memo()
    abandoned = translation_steps(snapshot, "default/gw", SETTINGS, memo=memo)
    next(abandoned)
    abandoned.close()
    pauses, translation = _run(translation_steps(snapshot, "default/gw", SETTINGS, memo=memo))
    assert pauses == 100 // REBUILDS_PER_STEP + 1
    assert translation == expected
    assert _run(translation_steps(snapshot, "default/gw", SETTINGS, memo=memo)) == (1, expected)


def _run(steps: Generator[None, None, GatewayTranslation]) -> tuple[int, GatewayTranslation]:
    """The pauses `steps` made, and its translation."""
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            translation: GatewayTranslation = done.value
            return pauses, translation
        pauses += 1
