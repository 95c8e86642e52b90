"""The informer cache: raw API objects by key, plus named secondary indexes.

Invariants:
- Every stored object is reachable under exactly `object_key(obj)`.
- Indexes always agree with the contents: for every indexer `name`, key `k` is
  listed under value `v` iff `v in indexer(store[k])`. Each mutation computes
  the new index values before it changes anything, so a failing indexer leaves
  the store as it was.
- A mutation is atomic for other coroutines: the methods never await, so no
  reader can observe a half-applied `replace`.
- Cached objects are READ-ONLY by contract. Readers get the stored dicts
  themselves (copying every object on every read would cost more than the cache
  saves); mutating one corrupts the cache and the indexes for everyone. Copy
  before changing anything.

Only the informer that owns a Store mutates it (`upsert`, `delete`, `replace`);
everything else reads.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from agc_controller.core.keys import object_key

KubeObject = dict[str, Any]
"""A raw API object, exactly as the API returns it (after the informer's transform)."""

Indexer = Callable[[KubeObject], Iterable[str]]
"""Maps an object to the index values it is listed under (none, one or many)."""


@attrs.frozen
class ReplaceDeltas:
    """What `Store.replace` changed, for the informer to turn into notifications."""

    added: tuple[KubeObject, ...]  # keys that were not stored before
    updated: tuple[tuple[KubeObject, KubeObject], ...]  # (old, new) for keys in both
    deleted: tuple[KubeObject, ...]  # previously stored objects whose keys vanished


class Store:
    """Objects by key, with named indexes; see the module docstring for the contract."""

    def __init__(self) -> None:
        # key -> object; the single source of truth, indexes are derived from it
        self._objects: dict[str, KubeObject] = {}
        # index name -> indexer; fixed once the store holds objects
        self._indexers: dict[str, Indexer] = {}
        # index name -> index value -> keys listed under it; never holds an empty set
        self._indexes: dict[str, dict[str, set[str]]] = {}
        # index name -> key -> the values the key is listed under; remembered so
        # removal never depends on re-running an indexer on the old object
        self._values_of_key: dict[str, dict[str, frozenset[str]]] = {}

    def add_indexer(self, name: str, indexer: Indexer) -> None:
        """Register an index; only before the informer starts (the store is empty)."""
        if name in self._indexers:
            raise ValueError(f"indexer {name!r} already registered")
        if self._objects:
            raise RuntimeError(f"indexer {name!r} added after the store was filled")
        self._indexers[name] = indexer
        self._indexes[name] = {}
        self._values_of_key[name] = {}

    # Reads

    def get(self, key: str) -> KubeObject | None:
        return self._objects.get(key)

    def list(self) -> list[KubeObject]:
        """All objects, in no particular order."""
        return list(self._objects.values())

    def keys(self) -> builtins.list[str]:
        return list(self._objects)

    def by_index(self, index_name: str, value: str) -> builtins.list[KubeObject]:
        """Objects listed under `value` in index `index_name`, sorted by key.

        Sorted so that whatever is built from the result is deterministic.
        Raises KeyError for an index that was never registered (a typo, not an
        empty result).
        """
        keys = self._indexes[index_name].get(value, ())
        return [self._objects[key] for key in sorted(keys)]

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        """The keys listed under `value` in index `index_name`, in no particular order
        (`by_index` without the sorting, for readers that key their result anyway)."""
        return list(self._indexes[index_name].get(value, ()))

    def index_values(self, index_name: str, key: str) -> frozenset[str]:
        """The values `key` is listed under in index `index_name` (what its indexer
        returned when it was stored), without running the indexer again."""
        return self._values_of_key[index_name].get(key, frozenset())

    def indexed_values(self, index_name: str) -> builtins.list[str]:
        """Every value some key is listed under in index `index_name`, in no particular order."""
        return list(self._indexes[index_name])

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    # Mutations (the owning informer only)

    def upsert(self, obj: KubeObject) -> KubeObject | None:
        """Store `obj` under its key; return the object it replaced, if any."""
        key = object_key(obj)
        values = self._index_values(obj)
        old = self._objects.get(key)
        self._objects[key] = obj
        self._reindex(key, values)
        return old

    def delete(self, key: str) -> KubeObject | None:
        """Remove `key`; return the removed object (None when it was not stored)."""
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key)
        return old

    def replace(self, objects: Iterable[KubeObject]) -> ReplaceDeltas:
        """Make the contents exactly `objects`, and report what changed.

        Keys missing from `objects` are deleted; that is how an informer learns
        about deletions it missed while it was not watching.
        """
        new_objects = {object_key(obj): obj for obj in objects}
        new_values = {key: self._index_values(obj) for key, obj in new_objects.items()}
        added: list[KubeObject] = []
        updated: list[tuple[KubeObject, KubeObject]] = []
        for key, obj in new_objects.items():
            old = self._objects.get(key)
            if old is None:
                added.append(obj)
            else:
                updated.append((old, obj))
        deleted = [obj for key, obj in self._objects.items() if key not in new_objects]

        self._objects = new_objects
        for name in self._indexers:
            self._indexes[name] = {}
            self._values_of_key[name] = {}
        for key, values in new_values.items():
            self._reindex(key, values)
        return ReplaceDeltas(added=tuple(added), updated=tuple(updated), deleted=tuple(deleted))

    # Index bookkeeping

    def _index_values(self, obj: KubeObject) -> dict[str, frozenset[str]]:
        return {name: frozenset(indexer(obj)) for name, indexer in self._indexers.items()}

    def _reindex(self, key: str, values: dict[str, frozenset[str]]) -> None:
        for name, new in values.items():
            index = self._indexes[name]
            old = self._values_of_key[name].get(key, frozenset())
            for value in old - new:
                self._remove_from_index(index, value, key)
            for value in new - old:
                index.setdefault(value, set()).add(key)
            if new:
                self._values_of_key[name][key] = new
            else:
                self._values_of_key[name].pop(key, None)

    def _unindex(self, key: str) -> None:
        for name, index in self._indexes.items():
            for value in self._values_of_key[name].pop(key, frozenset()):
                self._remove_from_index(index, value, key)

    @staticmethod
    def _remove_from_index(index: dict[str, set[str]], value: str, key: str) -> None:
        keys = index[value]
        keys.discard(key)
        if not keys:
            del index[value]
