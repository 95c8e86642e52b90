"""Status: the pure merge of a desired status (core.status, from translation) into the
stored one (`prepare_status`), and the writer that puts it to the API."""

from agc_controller.status.prepare import (
    MAX_POLICY_ANCESTORS,
    MAX_ROUTE_PARENTS,
    dropped_entries,
    is_stale,
    merge_conditions,
    prepare_status,
)
from agc_controller.status.writer import (
    MAX_ATTEMPTS,
    StaleStatusError,
    StatusWriteError,
    StatusWriter,
)

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_POLICY_ANCESTORS",
    "MAX_ROUTE_PARENTS",
    "StaleStatusError",
    "StatusWriteError",
    "StatusWriter",
    "dropped_entries",
    "is_stale",
    "merge_conditions",
    "prepare_status",
]
