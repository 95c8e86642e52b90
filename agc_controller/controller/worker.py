"""One reconcile of one key, and the worker loop around it.

A reconcile is level-triggered: it rebuilds the whole desired state of its
Gateway from the cache (reusing what did not change, translate/memo.py),
applies it, and writes every status that changed: the routes' and policies'
while the provider works, the Gateway's with the provider's result. It
never replays deltas, so running it twice is harmless. Failures go back to the
queue rate-limited (never dropped); a key that keeps failing (a poisoned
object) backs off alone while the other workers go on. So does a Gateway the
provider refused for a reason time may lift (`ApplyResult.temporary`), once its
status says why.

Observability rides along without changing that: every provider apply and
every reconcile is measured (`ControllerMetrics`), and a Gateway Event is
recorded only after the status write succeeded and only when `Programmed`
changed status — judged against what this replica last wrote for that object
(uid), or, the first time, against the cached status (so a new leader does not
re-announce what its predecessor already reported).

An IngressClass key reconciles the same way: its Ingresses are translated as
the one Gateway they are served as (translate/ingress), the provider programs
it, and each Ingress gets `status.loadBalancer` and, Ingress having no
conditions, Events: each note once, when it first applies (kept per uid; a new
leader repeats them), queued and posted off the reconcile's path.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import attrs
import structlog

from agc_controller.controller.cache import Cache
from agc_controller.core import conditions as c
from agc_controller.core import resources as r
from agc_controller.core.clock import Clock
from agc_controller.core.errors import PermanentError, TemporaryError
from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.status import (
    ApplyResult,
    ConditionStatus,
    DesiredStatus,
    GatewayClassStatus,
    GatewayStatus,
    IngressStatus,
    ListenerSetStatus,
)
from agc_controller.providers.base import Provider
from agc_controller.queue import ShutDown, WorkQueue
from agc_controller.runtime.events import EventRecorder, GatewayEvent, gateway_transition
from agc_controller.runtime.metrics import ApplyOutcome, ControllerMetrics, ReconcileOutcome
from agc_controller.status import StatusWriter
from agc_controller.translate import (
    GatewayTranslation,
    Memo,
    TranslateSettings,
    translate_gateway_class,
    translation_steps,
)
from agc_controller.translate.ingress import (
    IngressMemo,
    IngressTranslation,
    Note,
    ingress_gateway_key,
    ingress_translation_steps,
)
from agc_controller.translate.model import LoadBalancer

T = TypeVar("T")

log = structlog.get_logger(__name__)

# status writes in flight per reconcile: enough to write a thousand route statuses
# in about a second, few enough not to trip API priority and fairness
STATUS_CONCURRENCY = 16


@attrs.define
class Reconciler:
    cache: Cache
    settings: TranslateSettings
    provider: Provider
    writer: StatusWriter
    clock: Clock
    metrics: ControllerMetrics
    # None: record no Events
    events: EventRecorder | None = None
    # Gateway -> (uid, Programmed status) as this replica last wrote it
    _programmed: dict[ObjectKey, tuple[str, ConditionStatus]] = attrs.field(
        factory=dict, init=False
    )
    # Gateway -> what its last translation can reuse (translate/memo.py)
    _memos: dict[ObjectKey, Memo] = attrs.field(factory=dict, init=False)
    # Gateway -> the route and policy statuses known written, by identity: translation
    # hands back the very same object while a status is unchanged, so most of a
    # reconcile's statuses cost one lookup here (the writer checks the rest against
    # the cached resourceVersion)
    _written: dict[ObjectKey, dict[int, DesiredStatus]] = attrs.field(factory=dict, init=False)
    # IngressClass -> what its last translation can reuse
    _ingress_memos: dict[ObjectKey, IngressMemo] = attrs.field(factory=dict, init=False)
    # IngressClass -> Ingress uid -> what was last announced on it: its generation,
    # its notes (the translation's tuple, the same object while unchanged) and the
    # notes recorded as Events (each note is recorded when it first applies, not on
    # every reconcile)
    _ingress_notes: dict[ObjectKey, dict[str, _Announced]] = attrs.field(factory=dict, init=False)

    async def reconcile(self, key: ObjectKey) -> None:
        if key.kind == r.INGRESS_CLASS.kind:
            await self._reconcile_ingress_class(key)
            return
        if key.kind == "GatewayClass":
            status = translate_gateway_class(
                self.cache.snapshot_for_class(key.name), key.name, self.settings
            )
            if status is not None:
                await self.writer.write(status, self.cache.get(r.GATEWAY_CLASS.kind, key.name))
            return
        memo = self._memos.setdefault(key, Memo())
        translation: GatewayTranslation = await _in_steps(
            translation_steps(
                self.cache.snapshot_for_gateway(key), key.namespaced_name, self.settings, memo=memo
            )
        )
        if translation.node is None:
            del self._memos[key]
            self._written.pop(key, None)
        # Route and policy status is translation's alone (Accepted, ResolvedRefs): it goes
        # out while the data plane is programmed, so a user's `kubectl get` does not wait
        # for NGINX or ARM. Only the Gateway's status needs the provider's result.
        attached = asyncio.create_task(
            self._write_all(
                [*translation.route_statuses, *translation.policy_statuses],
                remember=key if translation.node is not None else None,
            )
        )
        try:
            result: ApplyResult | None = None
            if translation.load_balancer is not None:
                result = await self._apply(translation.load_balancer)
            else:
                await self.provider.delete(key)
        except asyncio.CancelledError:
            attached.cancel()
            await asyncio.gather(attached, return_exceptions=True)
            raise
        except Exception:
            # the provider's failure is what the queue hears about; the route and
            # policy statuses still finish (they do not depend on it)
            await asyncio.gather(attached, return_exceptions=True)
            raise
        gateway_status = translation.gateway_status(result)
        cached = self.cache.get(r.GATEWAY.kind, key.namespaced_name)
        written = await asyncio.gather(
            attached,
            self._write_all(
                [
                    *([gateway_status] if gateway_status else []),
                    *translation.listener_set_statuses(result),
                ]
            ),
            return_exceptions=True,
        )
        for outcome in written:
            if isinstance(outcome, BaseException):
                raise outcome
        if gateway_status is None or cached is None:
            self._programmed.pop(key, None)
        else:
            await self._announce(key, cached, gateway_status)
        if result is not None and result.temporary:
            # reported, and tried again: the same input may succeed later
            raise TemporaryError(result.message)

    async def _reconcile_ingress_class(self, key: ObjectKey) -> None:
        """Translate the class's Ingresses as one Gateway, program it, and report back on
        each Ingress: `status.loadBalancer` and Events (Ingress has no conditions)."""
        memo = self._ingress_memos.setdefault(key, IngressMemo())
        translation: IngressTranslation = await _in_steps(
            ingress_translation_steps(
                self.cache.snapshot_for_ingress_class(key.name), key.name, self.settings, memo=memo
            )
        )
        if translation.load_balancer is None:
            del self._ingress_memos[key]
            self._ingress_notes.pop(key, None)
            self.metrics.set_ingress_warnings(key.name, {})
            self._written.pop(key, None)
            await self.provider.delete(ingress_gateway_key(key.name))
            return
        result = await self._apply(translation.load_balancer)
        await self._write_all(list(translation.ingress_statuses(result)), remember=key)
        self._announce_ingresses(key, translation, result)
        if result.temporary:
            raise TemporaryError(result.message)

    def _announce_ingresses(
        self, key: ObjectKey, translation: IngressTranslation, result: ApplyResult
    ) -> None:
        """Record each note on an Ingress once, when it first applies; and, once per
        generation, where a programmed Ingress is served."""
        notes = translation.notes(result)
        self.metrics.set_ingress_warnings(
            key.name,
            collections.Counter(
                reason
                for own in notes.values()
                for reason in {n.reason for n in own if n.type == "Warning"}
            ),
        )
        addresses = ", ".join(a.value for a in result.addresses)
        known = self._ingress_notes.get(key, {})
        now: dict[str, _Announced] = {}
        pending: list[tuple[dict[str, Any], Note]] = []
        for store_key, ingress in translation.ingresses.items():
            meta = ingress["metadata"]
            uid, generation = str(meta.get("uid", "")), meta.get("generation", 1)
            own = notes.get(store_key, ())
            before = known.get(uid)
            if (
                before is not None
                and before.notes is own
                and before.generation == generation
                and before.programmed == result.programmed
            ):
                now[uid] = before  # the same as last time: nothing to look at
                continue
            current = set(own)
            if result.programmed:
                current.add(
                    Note(
                        "Normal",
                        "Programmed",
                        f"Generation {generation} is programmed"
                        + (f", served at {addresses}" if addresses else ""),
                    )
                )
            recorded = before.recorded if before is not None else frozenset()
            pending += [(ingress, n) for n in sorted(current - recorded, key=_note_order)]
            now[uid] = _Announced(generation, own, result.programmed, frozenset(current))
        self._ingress_notes[key] = now
        if self.events is not None:
            for ingress, note in pending:
                self.events.record_soon(
                    ingress,
                    r.INGRESS,
                    GatewayEvent(note.type, note.reason, note.message),
                    action="Translate",
                )

    async def _apply(self, model: LoadBalancer) -> ApplyResult:
        """The provider's outcome; a `PermanentError` is the Gateway's `Programmed=False`."""
        started = self.clock.monotonic()
        outcome: ApplyOutcome = "error"
        try:
            try:
                result = await self.provider.apply(model)
            except PermanentError as e:
                log.warning(
                    "apply_refused", gateway=str(model.gateway), reason=e.reason, error=str(e)
                )
                result = ApplyResult(programmed=False, reason=e.reason, message=str(e))
            outcome = "programmed" if result.programmed else "rejected"
            return result
        finally:
            self.metrics.observe_apply(
                provider=self.provider.name,
                outcome=outcome,
                seconds=self.clock.monotonic() - started,
            )

    async def _announce(
        self, key: ObjectKey, cached: dict[str, Any], status: GatewayStatus
    ) -> None:
        """Record an Event if the written `Programmed` changed status."""
        programmed = next(cond for cond in status.conditions if cond.type == c.PROGRAMMED)
        uid = str(cached["metadata"].get("uid", ""))
        known = self._programmed.get(key)
        previous = known[1] if known and known[0] == uid else _cached_programmed(cached)
        self._programmed[key] = (uid, programmed.status)
        event = gateway_transition(previous, programmed)
        if event is not None and self.events is not None:
            await self.events.gateway_event(cached, event)

    async def _write_all(
        self, statuses: list[DesiredStatus], *, remember: ObjectKey | None = None
    ) -> None:
        """Write every status that changed; if any failed, raise the first failure after
        trying all. Unchanged ones cost a lookup, not a task (delta status). With
        `remember`, the statuses written (or found current) are remembered for that
        Gateway's next reconcile."""
        gate = asyncio.Semaphore(STATUS_CONCURRENCY)
        known = self._written.get(remember, {}) if remember else {}

        async def write(status: DesiredStatus, cached: dict[str, object] | None) -> None:
            async with gate:
                await self.writer.write(status, cached)

        changed = [
            (status, cached)
            for status in statuses
            if known.get(id(status)) is not status
            and not self.writer.is_current(status, cached := self._cached(status))
        ]
        results = await asyncio.gather(*(write(*c) for c in changed), return_exceptions=True)
        failed = [(c[0], r) for c, r in zip(changed, results, strict=True) if r is not None]
        if remember is not None:
            unwritten = {id(status) for status, _ in failed}
            self._written[remember] = {
                id(status): status for status in statuses if id(status) not in unwritten
            }
        for _, outcome in failed:
            if isinstance(outcome, BaseException):
                raise outcome

    def _cached(self, status: DesiredStatus) -> dict[str, object] | None:
        """The cached object the status belongs to (the writer reads it instead of a GET)."""
        if isinstance(status, GatewayClassStatus):
            return self.cache.get(r.GATEWAY_CLASS.kind, status.name)
        if isinstance(status, GatewayStatus):
            kind = r.GATEWAY.kind
        elif isinstance(status, ListenerSetStatus):
            kind = r.LISTENER_SET.kind
        elif isinstance(status, IngressStatus):
            kind = r.INGRESS.kind
        else:
            kind = status.kind
        return self.cache.get(kind, namespaced_name(status.namespace, status.name))


@attrs.frozen
class _Announced:
    """What was last announced on one Ingress."""

    generation: object
    # the translation's notes for it (compared by identity: unchanged, the same tuple)
    notes: tuple[Note, ...]
    programmed: bool
    # the notes recorded as Events (those that still apply)
    recorded: frozenset[Note]


async def _in_steps(steps: Generator[None, None, T]) -> T:
    """Run a stepped translation, letting other work run between its steps (a bulk of
    new routes takes many)."""
    while True:
        await asyncio.sleep(0)
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


def _note_order(note: Note) -> tuple[str, str, str]:
    # warnings first, then by reason and text: a stable order to read them in
    return ("0" if note.type == "Warning" else "1", note.reason, note.message)


def _cached_programmed(gateway: dict[str, Any]) -> ConditionStatus | None:
    for cond in (gateway.get("status") or {}).get("conditions") or []:
        if cond.get("type") == c.PROGRAMMED:
            status: ConditionStatus = cond.get("status")
            return status
    return None


# called after each reconcile that ran to an outcome (not after a cancelled one)
OnReconciled = Callable[[ObjectKey, ReconcileOutcome, float], None]


def _ignore(_key: ObjectKey, _outcome: ReconcileOutcome, _seconds: float) -> None:
    return


async def run_worker(
    queue: WorkQueue[ObjectKey],
    reconcile: Callable[[ObjectKey], Awaitable[None]],
    *,
    clock: Clock,
    on_reconciled: OnReconciled = _ignore,
) -> None:
    """Take keys until the queue shuts down; never two workers on one key (the queue's rule)."""
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        attempt = queue.num_requeues(key)
        started = clock.monotonic()
        outcome: ReconcileOutcome = "success"
        with structlog.contextvars.bound_contextvars(
            kind=key.kind, object=str(key), attempt=attempt
        ):
            try:
                await reconcile(key)
            except asyncio.CancelledError:
                queue.add(key)
                queue.done(key)
                raise
            except TemporaryError as e:
                # expected trouble: one line, no traceback
                outcome = "requeued"
                log.info("reconcile_requeued", reason=str(e), delay=e.delay)
                _requeue(queue, key, e.delay)
            except PermanentError as e:
                # retrying the same input cannot help; a change to it enqueues the key again
                outcome = "error"
                log.warning("reconcile_refused", reason=e.reason, error=str(e))
                queue.forget(key)
            except Exception:
                # a bug: keep the traceback, and retry in case it was a transient one
                outcome = "error"
                log.exception("reconcile_failed")
                _requeue(queue, key, None)
            else:
                queue.forget(key)
        queue.done(key)
        on_reconciled(key, outcome, clock.monotonic() - started)


def _requeue(queue: WorkQueue[ObjectKey], key: ObjectKey, delay: float | None) -> None:
    if delay is not None:
        queue.add_after(key, delay)
    else:
        queue.add_rate_limited(key)
