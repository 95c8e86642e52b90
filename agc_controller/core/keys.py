"""How objects are named: one type (`ObjectKey`) and one string form.

The string form is client-go's MetaNamespaceKey: "namespace/name" for a
namespaced object, "name" for a cluster-scoped one. Informer stores and
translation snapshots are keyed by it; work items, statuses and the ALB model
carry `ObjectKey`, which knows its kind as well. Build and read both with the
helpers here, never by hand.
"""

from __future__ import annotations

from typing import Any

import attrs


def namespaced_name(namespace: str | None, name: str) -> str:
    """The store key of an object: "namespace/name", or "name" when cluster-scoped."""
    return f"{namespace}/{name}" if namespace else name


def object_key(obj: dict[str, Any]) -> str:
    """The store key of an API object (its metadata.namespace and metadata.name)."""
    metadata = obj["metadata"]
    return namespaced_name(metadata.get("namespace"), str(metadata["name"]))


# the hash is cached: keys are looked up in sets and dicts many times per translation
@attrs.frozen(cache_hash=True)
class ObjectKey:
    """A namespaced (or cluster-scoped, namespace "") object of one kind."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def parse(cls, kind: str, key: str) -> ObjectKey:
        """The ObjectKey of `kind` named by a store key ("namespace/name" or "name")."""
        namespace, _, name = key.rpartition("/")
        return cls(kind, namespace, name)

    @property
    def namespaced_name(self) -> str:
        """The store key of the object (see `namespaced_name`)."""
        return namespaced_name(self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespaced_name}"
