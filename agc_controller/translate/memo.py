"""Memory between translations of one Gateway: reuse every sub-result whose inputs
did not change.

Translation stays level-triggered and pure: every call still computes the whole
desired state of its Gateway from the snapshot it is given. A `Memo` only saves
work: it remembers each sub-result with what it read, and hands it back while
none of that changed.

What "changed" means: snapshot entries are the informer cache's objects, which
are replaced, never mutated, on every update (informers/store.py), so an entry
that is still the *same object* still has the same content. `changed_inputs`
compares the snapshot with the previous translation's, entry by entry, by
identity (the route tables aside: each route's entry checks its own route).

- A route's node, its attachment to the Gateway and its status (`RouteEntry`)
  depend on the route object, the snapshot entries its build read (recorded by
  `recording` as it reads, absent ones included), the ReferenceGrants and the
  Gateway node. It is reused while the route is the same object, the grants and
  Gateway node are the same objects, and none of the entries it read changed.
- The Gateway node, the ReferenceGrants and the BackendTLSPolicies are built
  each time (one each per translation) and replaced by the previous object when
  they compare equal (`stable`), so that the identity of everything built on
  them holds.
- The host tables (build.HostTables) are updated by difference: a route whose
  attachments are another object than last time dirties the hosts it covers.
- Endpoints are not part of a route's result: each backend's come from its
  Service's EndpointSlices once per translation, reused while those are the
  same objects (`endpoints`). An endpoint change touches one entry of the
  model's endpoint table, never the routes sending to the Service. The probes
  derived from a backend's pods (`readiness_checks`) are kept the same way,
  while its EndpointSlices and the pods they target are the same objects.

Induction keeps it sound: every entry in the memo was valid for the previous
snapshot, and is reused only if nothing it read differs between that snapshot
and this one. Equal inputs give equal outputs: a translation with a memo equals
one from scratch (tests/unit/test_translate_incremental.py checks it after every
step of random edits). A memo belongs to one Gateway and one set of settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import attrs

from agc_controller.core.keys import ObjectKey
from agc_controller.translate.build import HostTables
from agc_controller.translate.graph.backends import EndpointSource, ready_endpoints, target_pod
from agc_controller.translate.graph.readiness import readiness_check
from agc_controller.translate.model import Endpoint, HealthCheck
from agc_controller.translate.settings import TranslateSettings
from agc_controller.translate.snapshot import Obj, Snapshot

T = TypeVar("T")
V = TypeVar("V")

# a key standing for "the whole field" in what was read (no store key contains it)
WHOLE = "//whole"
# the fields every route entry checks by itself (its own route object)
_ROUTE_TABLES = frozenset({"http_routes", "grpc_routes", "tls_routes", "tcp_routes", "udp_routes"})

# (snapshot field, store key or WHOLE)
Input = tuple[str, str]


class _Recording(Mapping[str, V]):
    """A read-only view of one snapshot field that notes every key read.

    Iterating it (or asking its size) reads the whole field.
    """

    def __init__(self, inner: Mapping[str, V]) -> None:
        self._inner = inner
        self.seen: set[str] = set()

    def __getitem__(self, key: str) -> V:
        self.seen.add(key)
        return self._inner[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return self._inner.get(key, default)

    def __iter__(self) -> Iterator[str]:
        self.seen.add(WHOLE)
        return iter(self._inner)

    def __len__(self) -> int:
        self.seen.add(WHOLE)
        return len(self._inner)


def recording(snapshot: Snapshot) -> tuple[Snapshot, Callable[[], frozenset[Input]]]:
    """A view of `snapshot` that records what is read through it, and a function
    returning the inputs read so far."""
    views = {f.name: _Recording(getattr(snapshot, f.name)) for f in attrs.fields(Snapshot)}

    def reads() -> frozenset[Input]:
        return frozenset((field, key) for field, view in views.items() for key in view.seen)

    return attrs.evolve(snapshot, **views), reads


# backend name -> (its source, the snapshot objects its value read, its value)
_PerBackend = dict[str, tuple[EndpointSource, tuple[Obj | None, ...], V]]


def _per_backend(
    known: _PerBackend[V],
    snapshot: Snapshot,
    wanted: Mapping[str, EndpointSource],
    *,
    reads_pods: Callable[[EndpointSource], bool],
    compute: Callable[[EndpointSource, tuple[Obj, ...]], V],
) -> _PerBackend[V]:
    """A value per backend in `wanted` computed from its Service's EndpointSlices (and
    the pods they target, where `reads_pods` says), the `known` one while those are
    the same objects."""
    found: _PerBackend[V] = {}
    for name in sorted(wanted):
        source = wanted[name]
        slices = snapshot.endpoint_slices.get(source.service.namespaced_name, ())
        read = (*slices, *_pods_of(slices, snapshot)) if reads_pods(source) else slices
        entry = known.get(name)
        if entry is not None and entry[0] == source and _same(entry[1], read):
            found[name] = entry
        else:
            found[name] = (source, read, compute(source, slices))
    return found


def _pods_of(slices: tuple[Obj, ...], snapshot: Snapshot) -> tuple[Obj | None, ...]:
    """The pods the slices' endpoints target, as the snapshot has them (None: absent)."""
    return tuple(
        snapshot.pods.get(key)
        for s in slices
        for endpoint in s.get("endpoints") or []
        if (key := target_pod(endpoint, s["metadata"]["namespace"])) is not None
    )


def _same(a: object, b: object) -> bool:
    """Identity, looking one level into tuples (an EndpointSlice group is rebuilt per
    snapshot; its slices are the cached objects)."""
    if a is b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
    return False


def changed_inputs(previous: Snapshot, current: Snapshot) -> frozenset[Input]:
    """Every entry that differs between the two snapshots (added, removed or another
    object), and the WHOLE of each field with such an entry; route tables excepted."""
    changed: set[Input] = set()
    for field in attrs.fields(Snapshot):
        if field.name in _ROUTE_TABLES:
            continue
        before: Mapping[str, object] = getattr(previous, field.name)
        after: Mapping[str, object] = getattr(current, field.name)
        if before is after:
            continue
        keys = {k for k, v in after.items() if not _same(before.get(k), v)}
        keys.update(k for k in before if k not in after)
        if keys:
            changed.update((field.name, k) for k in keys)
            changed.add((field.name, WHOLE))
    return frozenset(changed)


@attrs.frozen
class RouteEntry:
    """A route's sub-results and what they were computed from."""

    route: Obj  # the route object (identity)
    key: ObjectKey
    # the ReferenceGrants and Gateway node objects it was built against (identity)
    grants: object
    gateway: object
    # the snapshot entries its build read
    reads: frozenset[Input]
    # what translation made of it; opaque here (translate/__init__.py owns the shape)
    result: Any


@attrs.define
class Memo:
    """Sub-results of the last translation of one Gateway; see the module docstring."""

    # the settings everything here was computed with; other settings: start over
    settings: TranslateSettings | None = None
    # the snapshot of the last translation; None: nothing is known
    previous: Snapshot | None = None
    # route kind and store key -> its entry, valid for `previous`
    routes: dict[tuple[str, str], RouteEntry] = attrs.field(factory=dict)
    # the host tables of the last model (build.py)
    hosts: HostTables = attrs.field(factory=HostTables)
    # backend name -> (its source, the EndpointSlices read, its ready endpoints)
    _endpoints: _PerBackend[tuple[Endpoint, ...]] = attrs.field(factory=dict)
    # backend name -> (its source, the EndpointSlices and pods read, its pods' probe)
    _readiness: _PerBackend[HealthCheck | None] = attrs.field(factory=dict)
    # the previous value of a translation-wide object, by name (kept when equal)
    _shared: dict[str, object] = attrs.field(factory=dict)

    def reset(self, settings: TranslateSettings) -> None:
        self.settings = settings
        self.previous = None
        self.routes.clear()
        self.hosts = HostTables()
        self._endpoints.clear()
        self._readiness.clear()
        self._shared.clear()

    def stable(self, name: str, value: T) -> T:
        """`value`, or the previous one of that name when it compares equal (keeping
        the identity of everything built on it)."""
        previous = self._shared.get(name)
        if previous is not None and type(previous) is type(value) and previous == value:
            return previous
        self._shared[name] = value
        return value

    def endpoints(
        self, snapshot: Snapshot, wanted: Mapping[str, EndpointSource]
    ) -> dict[str, tuple[Endpoint, ...]]:
        """The ready endpoints of every backend in `wanted`, by name (sorted); a
        backend whose EndpointSlices are the same objects as last time keeps its
        endpoints without reading them again."""
        self._endpoints = _per_backend(
            self._endpoints,
            snapshot,
            wanted,
            # a mesh backend's endpoints also read the pods behind them
            reads_pods=lambda source: source.mesh,
            compute=lambda source, slices: ready_endpoints(
                slices, source.port_name, snapshot.pods if source.mesh else None
            ),
        )
        return {name: entry[2] for name, entry in self._endpoints.items()}

    def readiness_checks(
        self, snapshot: Snapshot, wanted: Mapping[str, EndpointSource]
    ) -> dict[str, HealthCheck]:
        """The probe the pods of every backend in `wanted` describe, by name, for those
        whose pods describe one (graph/readiness.py); kept while the backend's
        EndpointSlices and the pods they target are the same objects."""
        self._readiness = _per_backend(
            self._readiness,
            snapshot,
            wanted,
            reads_pods=lambda _: True,
            compute=lambda source, slices: readiness_check(slices, source.port_name, snapshot.pods),
        )
        return {name: check for name, (_, _, check) in self._readiness.items() if check}
