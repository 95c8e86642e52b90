"""Memory between translations of one Gateway: reuse every sub-result whose inputs
did not change.

Translation stays level-triggered and pure: every call still computes the whole
desired state of its Gateway from the snapshot it is given. A `Memo` only saves
work: it remembers each sub-result together with exactly what it read, and
hands it back when all of that is unchanged.

What "unchanged" means: snapshot entries are the informer cache's objects,
which are replaced, never mutated, on every update (informers/store.py), so an
entry that is still the *same object* still has the same content. Identity is
the whole test; it costs one pointer comparison per input.

- A route's node, its attachment to the Gateway and its status depend on the
  route object, the entries its build read from the snapshot (recorded by
  `_Recording` as it reads: Services, EndpointSlices, Namespaces), the
  ReferenceGrants and the Gateway node.
- The Gateway node, the ReferenceGrants and the BackendTLSPolicies are built
  each time (one each per translation) and replaced by the previous object when
  they compare equal, so that the identity of everything built on them holds.
- The host tables (build.HostTables) are updated by difference: a route whose
  attachments are another object than last time dirties the hosts it covers.

Equal inputs give equal outputs: a translation with a memo equals one from
scratch (tests/unit/test_translate_incremental.py checks it after every step of
random edits). A memo belongs to one Gateway and one set of settings; `reset`
forgets everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import attrs

from agc_controller.core.keys import ObjectKey
from agc_controller.translate.build import HostTables
from agc_controller.translate.settings import TranslateSettings
from agc_controller.translate.snapshot import Obj, Snapshot

T = TypeVar("T")
V = TypeVar("V")

# a key standing for "the whole field" in what was read (no store key contains it)
_WHOLE = "//whole"


class _Recording(Mapping[str, V]):
    """A read-only view of one snapshot field that notes every key read and what it held.

    Iterating it reads the whole field: recorded as the tuple of its (key, value)
    pairs under `_WHOLE`.
    """

    def __init__(self, inner: Mapping[str, V]) -> None:
        self._inner = inner
        # key -> the value read (None: absent); what validity is checked against
        self.seen: dict[str, object] = {}

    def __getitem__(self, key: str) -> V:
        value = self._inner.get(key)
        self.seen[key] = value
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._inner.get(key)
        self.seen[key] = value
        return default if value is None else value

    def __iter__(self) -> Iterator[str]:
        self.seen[_WHOLE] = _whole(self._inner)
        return iter(self._inner)

    def __len__(self) -> int:
        self.seen[_WHOLE] = _whole(self._inner)
        return len(self._inner)


def _whole(field: Mapping[str, object]) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(field.items()))


def _same_whole(a: tuple[tuple[str, object], ...], b: object) -> bool:
    """Same keys (by value: snapshot keys are rebuilt) holding the same objects."""
    return (
        isinstance(b, tuple)
        and len(a) == len(b)
        and all(ka == kb and _same(va, vb) for (ka, va), (kb, vb) in zip(a, b, strict=True))
    )


def _same(a: object, b: object) -> bool:
    """Identity, looking one level into tuples (an EndpointSlice group is rebuilt per
    snapshot, its slices are the cached objects)."""
    if a is b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
    return False


@attrs.frozen
class Reads:
    """What one sub-result read: (snapshot field, key, the value it found)."""

    entries: tuple[tuple[str, str, object], ...]

    def still_valid(self, snapshot: Snapshot) -> bool:
        for field, key, value in self.entries:
            mapping = getattr(snapshot, field)
            if key == _WHOLE:
                if not _same_whole(_whole(mapping), value):
                    return False
            elif not _same(mapping.get(key), value):
                return False
        return True


def recording(snapshot: Snapshot) -> tuple[Snapshot, Callable[[], Reads]]:
    """A view of `snapshot` that records what is read through it, and a function
    returning what was read so far."""
    views = {f.name: _Recording(getattr(snapshot, f.name)) for f in attrs.fields(Snapshot)}

    def reads() -> Reads:
        return Reads(
            tuple(
                (field, key, value)
                for field, view in views.items()
                for key, value in sorted(view.seen.items())
            )
        )

    return attrs.evolve(snapshot, **views), reads


@attrs.frozen
class RouteEntry:
    """A route's sub-results and what they were computed from."""

    route: Obj  # the route object (identity)
    key: ObjectKey
    # the ReferenceGrants and Gateway node objects it was built against (identity)
    grants: object
    gateway: object
    reads: Reads
    # what translation made of it; opaque here (translate/__init__.py owns the shape)
    result: Any


@attrs.define
class Memo:
    """Sub-results of the last translation of one Gateway; see the module docstring."""

    # the settings everything here was computed with; other settings: start over
    settings: TranslateSettings | None = None
    # route kind and store key -> its entry
    routes: dict[tuple[str, str], RouteEntry] = attrs.field(factory=dict)
    # the host tables of the last model (build.py)
    hosts: HostTables = attrs.field(factory=HostTables)
    # the previous value of a translation-wide object, by name (kept when equal)
    _shared: dict[str, object] = attrs.field(factory=dict)

    def reset(self, settings: TranslateSettings) -> None:
        self.settings = settings
        self.routes.clear()
        self.hosts = HostTables()
        self._shared.clear()

    def stable(self, name: str, value: T) -> T:
        """`value`, or the previous one of that name when it compares equal (keeping
        the identity of everything built on it)."""
        previous = self._shared.get(name)
        if previous is not None and type(previous) is type(value) and previous == value:
            return previous
        self._shared[name] = value
        return value
