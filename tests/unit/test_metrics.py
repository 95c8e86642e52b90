"""ControllerMetrics as the work queue's QueueMetrics, and the process-wide provider series."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from agc_controller.core.clock import SystemClock
from agc_controller.queue import WorkQueue
from agc_controller.runtime.metrics import (
    ControllerMetrics,
    record_arm_request,
    record_nginx_reload,
)
from tests.unit.test_queue import FakeClock


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    sample = registry.get_sample_value(metric, labels)
    assert sample is not None, f"{metric}{labels} is not exposed"
    return sample


async def test_queue_reports_adds_depth_latency_work_and_retries() -> None:
    clock = FakeClock()
    metrics = ControllerMetrics(provider="memory")
    queue: WorkQueue[str] = WorkQueue(clock=clock, metrics=metrics)
    reg = metrics.registry
    queue.add("a")
    queue.add("a")  # deduplicated: not an add
    queue.add("b")
    assert value(reg, "workqueue_adds_total", name="agc-controller") == 2
    assert value(reg, "workqueue_depth", name="agc-controller") == 2

    clock.now += 3
    key = await asyncio.wait_for(queue.get(), 2)
    assert value(reg, "workqueue_depth", name="agc-controller") == 1
    assert value(reg, "workqueue_queue_duration_seconds_count", name="agc-controller") == 1
    assert value(reg, "workqueue_queue_duration_seconds_sum", name="agc-controller") == 3
    clock.now += 0.25
    queue.add_rate_limited(key)
    queue.done(key)
    assert value(reg, "workqueue_retries_total", name="agc-controller") == 1
    assert value(reg, "workqueue_work_duration_seconds_count", name="agc-controller") == 1
    assert value(reg, "workqueue_work_duration_seconds_sum", name="agc-controller") == 0.25
    queue.shutdown()


def test_reconcile_apply_and_leader_series() -> None:
    metrics = ControllerMetrics(provider="memory")
    reg = metrics.registry
    # present before anything failed: a zero, not a gap
    assert value(reg, "agc_provider_apply_errors_total", provider="memory") == 0
    metrics.observe_reconcile(kind="Gateway", outcome="success", seconds=0.01)
    metrics.observe_apply(provider="memory", outcome="programmed", seconds=0.002)
    metrics.observe_apply(provider="memory", outcome="error", seconds=0.5)
    metrics.set_leader(True)
    assert (
        value(reg, "controller_runtime_reconcile_total", controller="Gateway", result="success")
        == 1
    )
    assert (
        value(
            reg,
            "agc_provider_apply_duration_seconds_count",
            provider="memory",
            outcome="programmed",
        )
        == 1
    )
    assert value(reg, "agc_provider_apply_errors_total", provider="memory") == 1
    assert value(reg, "leader_election_master_status", name="agc-controller") == 1
    metrics.set_leader(False)
    assert value(reg, "leader_election_master_status", name="agc-controller") == 0


def test_ingress_warnings_add_up_over_classes_and_drop_to_zero() -> None:
    metrics = ControllerMetrics(provider="memory")
    reg = metrics.registry
    metrics.set_ingress_warnings("a", {"UnsupportedAnnotation": 2, "PathConflict": 1})
    metrics.set_ingress_warnings("b", {"UnsupportedAnnotation": 3})
    assert value(reg, "agc_ingress_warnings", reason="UnsupportedAnnotation") == 5
    assert value(reg, "agc_ingress_warnings", reason="PathConflict") == 1
    metrics.set_ingress_warnings("a", {})
    assert value(reg, "agc_ingress_warnings", reason="UnsupportedAnnotation") == 3
    assert value(reg, "agc_ingress_warnings", reason="PathConflict") == 0


def test_provider_series_are_process_wide_and_in_every_registry() -> None:
    first = ControllerMetrics(provider="local").registry
    second = ControllerMetrics(provider="azure").registry
    before = first.get_sample_value("agc_nginx_reloads_total", {"outcome": "failure"}) or 0
    record_nginx_reload(success=False)
    record_arm_request(method="put", status_code=429)
    for reg in (first, second):
        assert value(reg, "agc_nginx_reloads_total", outcome="failure") == before + 1
        assert value(reg, "agc_arm_requests_total", method="PUT", code="429") >= 1


async def test_loop_lag_shows_a_step_that_holds_the_event_loop() -> None:
    metrics = ControllerMetrics(provider="memory")
    reg = metrics.registry

    def late() -> float:
        """Samples over 25 ms."""
        return value(reg, "agc_event_loop_lag_seconds_count") - value(
            reg, "agc_event_loop_lag_seconds_bucket", le="0.025"
        )

    watching = asyncio.create_task(metrics.watch_loop_lag(SystemClock()))
    await asyncio.sleep(0.05)
    assert value(reg, "agc_event_loop_lag_seconds_count") >= 1
    before = late()
    time.sleep(0.06)  # noqa: ASYNC251 (the point: a step that holds the loop for 60 ms)
    await asyncio.sleep(0.03)
    watching.cancel()
    # its timer was due at most 10 ms into the step: it ran at least 50 ms late
    assert late() >= before + 1
