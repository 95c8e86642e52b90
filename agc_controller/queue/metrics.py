"""Hooks a work queue reports to, so a metrics backend can be plugged in.

The queue calls these synchronously on its hot path: implementations must be
cheap and must not raise or await. `NoopQueueMetrics` is the default.
"""

from __future__ import annotations

from typing import Protocol


class QueueMetrics(Protocol):
    def on_add(self) -> None:
        """A key became dirty (a real add, not a deduplicated one)."""
        ...

    def set_depth(self, depth: int) -> None:
        """Keys now waiting to be handed to a worker."""
        ...

    def on_retry(self) -> None:
        """A failed key was scheduled again through the rate limiter."""
        ...

    def observe_queue_latency(self, seconds: float) -> None:
        """How long a key waited between becoming dirty and reaching a worker."""
        ...

    def observe_work_duration(self, seconds: float) -> None:
        """How long a worker held a key, from `get` to `done`."""
        ...


class NoopQueueMetrics:
    def on_add(self) -> None:
        return

    def set_depth(self, depth: int) -> None:
        return

    def on_retry(self) -> None:
        return

    def observe_queue_latency(self, seconds: float) -> None:
        return

    def observe_work_duration(self, seconds: float) -> None:
        return
