"""Prometheus metrics of one controller process, served at `/metrics`.

Two scopes:
- `ControllerMetrics` holds the series of one Controller (work queue,
  reconciles, provider applies, leader state) on a registry of its own, so
  that several controllers in one process (tests) never share or clash.
- The data-plane series are process-wide and fed by providers through plain
  functions, so a provider needs no handle on the controller:
  `record_nginx_reload(success=...)` (the local provider, after each reload)
  and `record_arm_request(method=..., status_code=...)` (the azure provider,
  e.g. from the SDK's `raw_response_hook`). Every `ControllerMetrics`
  registry exposes them too.

The event loop's lag (`watch_loop_lag`): how late a timer due every LAG_INTERVAL
seconds runs. The controller does all its work on one event loop, so a step
that holds it (a translation, a decode, a collection) delays every other one —
informer events, status writes, probes; this series shows how long such steps
are, which no per-reconcile duration can.

Names: where a series means what client-go's work queue or controller-runtime
measures, it has their name and labels (workqueue_*{name}, controller_runtime_
reconcile_*{controller}, leader_election_master_status{name}), so dashboards
and alerts written for Kubernetes controllers work unchanged; `controller` is
the kind of key reconciled (Gateway, GatewayClass, IngressClass...).

Invariants: recording never raises and never awaits (the work queue calls the
`QueueMetrics` methods on its hot path); label values come from small fixed
sets (never object names), so the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agc_controller.core.clock import Clock

# reconcile outcomes: done; re-queued on a temporary error (status write,
# Retry-After); failed with an unexpected error (re-queued rate-limited)
ReconcileOutcome = Literal["success", "requeued", "error"]
# provider apply outcomes: programmed; rejected (ApplyResult.programmed False);
# raised (a temporary failure the queue retries)
ApplyOutcome = Literal["programmed", "rejected", "error"]

# controller-runtime's names for the outcomes
_RESULTS: Mapping[ReconcileOutcome, str] = {
    "success": "success",
    "requeued": "requeue",
    "error": "error",
}
# the `name` label of the work queue's series (the leader's is the Lease's name)
QUEUE_NAME = "agc-controller"

# seconds between two looks at the event loop's lag
LAG_INTERVAL = 0.01
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# reconciles range from sub-millisecond no-ops to ARM long-running operations (minutes)
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

NGINX_RELOADS = Counter(
    "agc_nginx_reloads",
    "NGINX configuration reloads by the local provider, by outcome.",
    ["outcome"],
    registry=None,
)
ARM_REQUESTS = Counter(
    "agc_arm_requests",
    "HTTP requests to Azure Resource Manager by the azure provider, by method and status code.",
    ["method", "code"],
    registry=None,
)


def record_nginx_reload(*, success: bool) -> None:
    """Count one NGINX reload (or a reload that NGINX refused)."""
    NGINX_RELOADS.labels(outcome="success" if success else "failure").inc()


def record_arm_request(*, method: str, status_code: int) -> None:
    """Count one ARM response; the azure SDK's `raw_response_hook` can call it with
    `response.http_request.method` and `response.http_response.status_code`."""
    ARM_REQUESTS.labels(method=method.upper(), code=str(status_code)).inc()


class ControllerMetrics:
    """The series of one controller. Implements `QueueMetrics` for its work queue."""

    def __init__(
        self,
        *,
        provider: str,
        lease_name: str = "agc-controller",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        for shared in (NGINX_RELOADS, ARM_REQUESTS):
            self.registry.register(shared)
        queue = {"name": QUEUE_NAME}
        self._depth = Gauge(
            "workqueue_depth",
            "Keys waiting in the work queue for a worker.",
            ["name"],
            registry=self.registry,
        ).labels(**queue)
        self._adds = Counter(
            "workqueue_adds",
            "Keys added to the work queue (deduplicated adds not counted).",
            ["name"],
            registry=self.registry,
        ).labels(**queue)
        self._retries = Counter(
            "workqueue_retries",
            "Failed keys re-queued through the rate limiter.",
            ["name"],
            registry=self.registry,
        ).labels(**queue)
        self._queue_latency = Histogram(
            "workqueue_queue_duration_seconds",
            "How long a key waited in the work queue before a worker took it.",
            ["name"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        ).labels(**queue)
        self._work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long a worker held a key.",
            ["name"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        ).labels(**queue)
        self._reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Duration of one reconcile, by kind of key.",
            ["controller"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._reconciles = Counter(
            "controller_runtime_reconcile",
            "Reconciles by kind of key and result (success, requeue: a temporary error "
            "retried, error: an unexpected one).",
            ["controller", "result"],
            registry=self.registry,
        )
        self._reconcile_errors = Counter(
            "controller_runtime_reconcile_errors",
            "Reconciles that failed with an unexpected error, by kind of key.",
            ["controller"],
            registry=self.registry,
        )
        self._apply = Histogram(
            "agc_provider_apply_duration_seconds",
            "Duration of one provider apply, by provider and outcome.",
            ["provider", "outcome"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._apply_errors = Counter(
            "agc_provider_apply_errors",
            "Provider applies that raised (temporary failures, retried).",
            ["provider"],
            registry=self.registry,
        )
        # a zero series from the start: "no errors" is a value, not a missing series
        self._apply_errors.labels(provider=provider)
        self._loop_lag = Histogram(
            "agc_event_loop_lag_seconds",
            f"How late a timer due every {LAG_INTERVAL * 1000:g} ms ran: the part of a step "
            "holding the event loop that it waited for.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self._ingress_warnings = Gauge(
            "agc_ingress_warnings",
            "Ingresses with a Warning of this reason in force (e.g. UnsupportedAnnotation, "
            "AnnotationRefused): what their Events say, countable.",
            ["reason"],
            registry=self.registry,
        )
        # IngressClass -> reason -> its Ingresses with such a Warning
        self._warnings: dict[str, Mapping[str, int]] = {}
        self._leader = Gauge(
            "leader_election_master_status",
            "1 while this replica holds the leader lease (or runs without election), else 0.",
            ["name"],
            registry=self.registry,
        ).labels(name=lease_name)

    # QueueMetrics

    def on_add(self) -> None:
        self._adds.inc()

    def set_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def on_retry(self) -> None:
        self._retries.inc()

    def observe_queue_latency(self, seconds: float) -> None:
        self._queue_latency.observe(seconds)

    def observe_work_duration(self, seconds: float) -> None:
        self._work_duration.observe(seconds)

    # controller

    def observe_reconcile(self, *, kind: str, outcome: ReconcileOutcome, seconds: float) -> None:
        self._reconcile_time.labels(controller=kind).observe(seconds)
        self._reconciles.labels(controller=kind, result=_RESULTS[outcome]).inc()
        if outcome == "error":
            self._reconcile_errors.labels(controller=kind).inc()

    def observe_apply(self, *, provider: str, outcome: ApplyOutcome, seconds: float) -> None:
        self._apply.labels(provider=provider, outcome=outcome).observe(seconds)
        if outcome == "error":
            self._apply_errors.labels(provider=provider).inc()

    def set_ingress_warnings(self, ingress_class: str, counts: Mapping[str, int]) -> None:
        """The Ingresses of `ingress_class` with a Warning of each reason, now (a reason
        gone everywhere stays as 0)."""
        before = self._warnings.get(ingress_class, {})
        self._warnings[ingress_class] = dict(counts)
        for reason in set(before) | set(counts):
            total = sum(c.get(reason, 0) for c in self._warnings.values())
            self._ingress_warnings.labels(reason=reason).set(total)

    def set_leader(self, leading: bool) -> None:
        self._leader.set(1 if leading else 0)

    async def watch_loop_lag(self, clock: Clock) -> None:
        """Observe the event loop's lag every LAG_INTERVAL seconds, for good."""
        while True:
            due = clock.monotonic() + LAG_INTERVAL
            await clock.sleep(LAG_INTERVAL)
            self._loop_lag.observe(max(0.0, clock.monotonic() - due))
