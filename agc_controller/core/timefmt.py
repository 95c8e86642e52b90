"""Kubernetes timestamps, formatted in one place.

The API has two: `Time` (RFC 3339, whole seconds; condition
lastTransitionTime) and `MicroTime` (microseconds; Lease renewTime, Event
eventTime). Both are UTC with a literal Z.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(epoch_seconds: float) -> str:
    """A `metav1.Time`: whole seconds (the API would truncate a fraction anyway)."""
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(epoch_seconds: float) -> str:
    """A `metav1.MicroTime`: microseconds."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
