"""The worker loop is the one place errors become what happens next: a temporary
error re-queues after its delay (one log line, no traceback), a permanent one is
not retried, and anything else (a bug) keeps its traceback and backs off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import structlog

from agc_controller.controller.worker import run_worker
from agc_controller.core.errors import PermanentError, TemporaryError
from agc_controller.core.keys import ObjectKey
from agc_controller.queue import WorkQueue
from tests.unit.test_queue import FakeClock, settle

KEY = ObjectKey("Gateway", "default", "gw")


@pytest.fixture
async def queue() -> AsyncIterator[tuple[WorkQueue[ObjectKey], FakeClock]]:
    clock = FakeClock()
    q: WorkQueue[ObjectKey] = WorkQueue(clock=clock)
    yield q, clock
    q.shutdown()


async def _run_once(
    q: WorkQueue[ObjectKey], clock: FakeClock, error: Exception
) -> list[dict[str, object]]:
    """Reconcile KEY once, failing with `error`; the log lines it wrote."""
    calls = 0

    async def reconcile(_key: ObjectKey) -> None:
        nonlocal calls
        calls += 1
        raise error

    q.add(KEY)
    with structlog.testing.capture_logs() as logs:
        worker = asyncio.create_task(run_worker(q, reconcile, clock=clock))
        await settle()
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert calls == 1
    return logs


async def test_a_temporary_error_requeues_after_its_delay_without_a_traceback(
    queue: tuple[WorkQueue[ObjectKey], FakeClock],
) -> None:
    q, clock = queue
    logs = await _run_once(q, clock, TemporaryError("the server said wait", delay=7.0))
    assert [(e["event"], e["log_level"], e.get("delay")) for e in logs] == [
        ("reconcile_requeued", "info", 7.0)
    ]
    assert "exc_info" not in logs[0]
    await clock.advance(6.9)
    assert q.len() == 0
    await clock.advance(0.2)
    assert q.len() == 1


async def test_a_temporary_error_without_a_delay_backs_off(
    queue: tuple[WorkQueue[ObjectKey], FakeClock],
) -> None:
    q, clock = queue
    await _run_once(q, clock, TemporaryError("conflict"))
    assert q.num_requeues(KEY) == 1


async def test_a_permanent_error_is_not_retried(
    queue: tuple[WorkQueue[ObjectKey], FakeClock],
) -> None:
    q, clock = queue
    logs = await _run_once(q, clock, PermanentError("refused for good", reason="Invalid"))
    assert [(e["event"], e["log_level"], e["reason"]) for e in logs] == [
        ("reconcile_refused", "warning", "Invalid")
    ]
    await clock.advance(3600)
    assert q.len() == 0
    assert q.num_requeues(KEY) == 0


async def test_a_bug_keeps_its_traceback_and_backs_off(
    queue: tuple[WorkQueue[ObjectKey], FakeClock],
) -> None:
    q, clock = queue
    logs = await _run_once(q, clock, KeyError("spec"))
    assert [(e["event"], e["log_level"], e.get("exc_info")) for e in logs] == [
        ("reconcile_failed", "error", True)
    ]
    assert q.num_requeues(KEY) == 1
