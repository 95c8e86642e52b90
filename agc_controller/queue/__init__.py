"""Work queue and rate limiters (client-go semantics); see `workqueue` for the invariants."""

from agc_controller.queue.metrics import NoopQueueMetrics, QueueMetrics
from agc_controller.queue.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from agc_controller.queue.workqueue import ShutDown, WorkQueue

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "NoopQueueMetrics",
    "QueueMetrics",
    "RateLimiter",
    "ShutDown",
    "WorkQueue",
    "default_controller_rate_limiter",
]
