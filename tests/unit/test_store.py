"""Store: contents by key, indexes that always agree with the contents, replace deltas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from agc_controller.informers import Indexer, Store, object_key


def _route(name: str, *parents: str, namespace: str = "ns", rv: str = "1") -> dict[str, Any]:
    return {
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "resourceVersion": rv,
        },
        "spec": {"parentRefs": [{"name": parent} for parent in parents]},
    }


def _by_parent(obj: dict[str, Any]) -> Iterable[str]:
    namespace = obj["metadata"]["namespace"]
    return [f"{namespace}/{ref['name']}" for ref in obj["spec"]["parentRefs"]]


def _by_namespace(obj: dict[str, Any]) -> Iterable[str]:
    return [obj["metadata"]["namespace"]]


INDEXERS: dict[str, Indexer] = {"parent": _by_parent, "namespace": _by_namespace}


def _store() -> Store:
    store = Store()
    for name, indexer in INDEXERS.items():
        store.add_indexer(name, indexer)
    return store


def assert_indexes_consistent(store: Store, *, also_values: Iterable[str] = ()) -> None:
    """Every index lookup equals what recomputing the indexers over the contents gives.

    `also_values` are values that may have been indexed before: they must not
    linger after the objects listing them changed or left.
    """
    for name, indexer in INDEXERS.items():
        expected: dict[str, list[str]] = {}
        for obj in store.list():
            for value in indexer(obj):
                expected.setdefault(value, []).append(object_key(obj))
        for value in {*expected, *also_values}:
            got = [object_key(obj) for obj in store.by_index(name, value)]
            assert got == sorted(expected.get(value, [])), (name, value)


def test_object_key_namespaced_and_cluster_scoped() -> None:
    assert object_key(_route("r", namespace="team-a")) == "team-a/r"
    assert object_key({"metadata": {"name": "gc"}}) == "gc"


def test_upsert_get_delete() -> None:
    store = _store()
    first = _route("r", "gw-1")
    assert store.upsert(first) is None
    assert store.get("ns/r") is first
    assert "ns/r" in store
    assert len(store) == 1

    second = _route("r", "gw-2", rv="2")
    assert store.upsert(second) is first
    assert store.get("ns/r") is second
    assert store.keys() == ["ns/r"]
    assert store.list() == [second]

    assert store.delete("ns/r") is second
    assert store.delete("ns/r") is None
    assert store.get("ns/r") is None
    assert len(store) == 0
    assert_indexes_consistent(store, also_values=["ns/gw-1", "ns/gw-2", "ns"])


def test_index_follows_updates_and_deletes() -> None:
    store = _store()
    store.upsert(_route("a", "gw-1", "gw-2"))
    store.upsert(_route("b", "gw-2"))
    assert [object_key(o) for o in store.by_index("parent", "ns/gw-2")] == ["ns/a", "ns/b"]

    assert store.index_values("parent", "ns/a") == {"ns/gw-1", "ns/gw-2"}
    assert sorted(store.index_keys("parent", "ns/gw-2")) == ["ns/a", "ns/b"]
    store.upsert(_route("a", "gw-3", rv="2"))  # a leaves gw-1 and gw-2
    assert store.index_values("parent", "ns/a") == {"ns/gw-3"}
    assert store.index_values("parent", "ns/nothing") == frozenset()
    assert store.by_index("parent", "ns/gw-1") == []
    assert [object_key(o) for o in store.by_index("parent", "ns/gw-2")] == ["ns/b"]
    assert [object_key(o) for o in store.by_index("parent", "ns/gw-3")] == ["ns/a"]

    store.delete("ns/b")
    assert store.by_index("parent", "ns/gw-2") == []
    assert_indexes_consistent(store, also_values=["ns/gw-1", "ns/gw-2", "ns/gw-3"])


def test_object_with_no_index_values_is_stored_but_not_indexed() -> None:
    store = _store()
    store.upsert(_route("lonely"))
    assert store.get("ns/lonely") is not None
    assert_indexes_consistent(store)
    store.upsert(_route("lonely", "gw", rv="2"))
    assert [object_key(o) for o in store.by_index("parent", "ns/gw")] == ["ns/lonely"]


def test_replace_swaps_contents_and_reports_deltas() -> None:
    store = _store()
    kept_old = _route("kept", "gw-1")
    changed_old = _route("changed", "gw-1")
    vanished = _route("vanished", "gw-1", namespace="other")
    for obj in (kept_old, changed_old, vanished):
        store.upsert(obj)

    kept_new = _route("kept", "gw-1")
    changed_new = _route("changed", "gw-2", rv="2")
    added = _route("added", "gw-2")
    deltas = store.replace([kept_new, changed_new, added])

    assert deltas.added == (added,)
    assert set(map(_pair_keys, deltas.updated)) == {("ns/kept", "1", "1"), ("ns/changed", "1", "2")}
    assert deltas.deleted == (vanished,)
    assert sorted(store.keys()) == ["ns/added", "ns/changed", "ns/kept"]
    assert store.get("ns/changed") is changed_new
    assert store.by_index("namespace", "other") == []
    assert [object_key(o) for o in store.by_index("parent", "ns/gw-1")] == ["ns/kept"]
    assert_indexes_consistent(store, also_values=["ns/gw-1", "ns/gw-2", "other/gw-1", "other"])


def test_replace_with_nothing_deletes_everything() -> None:
    store = _store()
    store.upsert(_route("a", "gw"))
    deltas = store.replace([])
    assert [object_key(o) for o in deltas.deleted] == ["ns/a"]
    assert len(store) == 0
    assert_indexes_consistent(store, also_values=["ns/gw", "ns"])


def test_failing_indexer_leaves_store_unchanged() -> None:
    store = _store()
    original = _route("a", "gw")
    store.upsert(original)
    broken = {"metadata": {"name": "a", "namespace": "ns"}}  # no spec: _by_parent raises
    with pytest.raises(KeyError):
        store.upsert(broken)
    with pytest.raises(KeyError):
        store.replace([broken])
    assert store.get("ns/a") is original
    assert_indexes_consistent(store)


def test_indexers_only_before_filling_and_unique() -> None:
    store = _store()
    with pytest.raises(ValueError, match="already registered"):
        store.add_indexer("parent", _by_parent)
    store.upsert(_route("a"))
    with pytest.raises(RuntimeError, match="after the store was filled"):
        store.add_indexer("late", _by_namespace)


def test_unknown_index_is_an_error_not_an_empty_result() -> None:
    with pytest.raises(KeyError):
        _store().by_index("no-such-index", "x")


def _pair_keys(pair: tuple[dict[str, Any], dict[str, Any]]) -> tuple[str, str, str]:
    old, new = pair
    assert object_key(old) == object_key(new)
    return object_key(new), old["metadata"]["resourceVersion"], new["metadata"]["resourceVersion"]
