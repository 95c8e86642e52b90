"""ReferenceGrant checks for cross-namespace references.

A reference from (group, kind, namespace) to (group, kind, namespace, name) is
allowed when it stays in one namespace, or when a ReferenceGrant in the
*target* namespace has a matching `from` and a matching `to` entry.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from agc_controller.translate.snapshot import Obj


@attrs.frozen
class Ref:
    group: str
    kind: str
    namespace: str
    name: str


@attrs.frozen
class ReferenceGrants:
    # grants by the namespace they live in (the target namespace)
    by_namespace: Mapping[str, tuple[Obj, ...]]

    @classmethod
    def from_grants(cls, grants: Mapping[str, Obj]) -> ReferenceGrants:
        by_namespace: dict[str, list[Obj]] = {}
        for grant in grants.values():
            by_namespace.setdefault(grant["metadata"]["namespace"], []).append(grant)
        return cls(by_namespace={k: tuple(v) for k, v in by_namespace.items()})

    def allows(self, *, from_group: str, from_kind: str, from_namespace: str, to: Ref) -> bool:
        if from_namespace == to.namespace:
            return True
        for grant in self.by_namespace.get(to.namespace, ()):
            spec = grant.get("spec") or {}
            from_ok = any(
                f.get("group", "") == from_group
                and f.get("kind") == from_kind
                and f.get("namespace") == from_namespace
                for f in spec.get("from") or []
            )
            to_ok = any(
                t.get("group", "") == to.group
                and t.get("kind") == to.kind
                and t.get("name") in (None, "", to.name)
                for t in spec.get("to") or []
            )
            if from_ok and to_ok:
                return True
        return False
