"""The one error taxonomy: temporary or permanent.

Every boundary (the Kubernetes API, ARM, NGINX) maps what went wrong into one
of these two, and the worker loop (controller/worker.py) is the one place that
turns them into what happens next:

- `TemporaryError`: expected trouble that time may fix (a conflict, a
  throttle, a timeout, an operation in progress). The key is re-queued after
  `delay` seconds when the far side said how long to wait (Retry-After), else
  with the queue's per-key exponential backoff. Logged as one line, without a
  traceback: it is not a bug.
- `PermanentError`: retrying the same input cannot help (the far side refused
  it for good, or it cannot be expressed). Raised by a provider's `apply`, it
  becomes the Gateway's `Programmed=False` condition with `reason` and the
  message; the key is not retried until something it depends on changes.

A provider's refusal that time may lift (a port another process holds) must
do both: say why and try again. It is not raised but returned, as
`ApplyResult(programmed=False, temporary=True)`; the reconcile writes that
status, then raises `TemporaryError` for the queue.

Anything else that escapes a reconcile is a bug: logged with its traceback and
retried with backoff, so a transient bug does not lose work.
"""

from __future__ import annotations

from agc_controller.core.conditions import R_INVALID


class ControllerError(Exception):
    """A failure the controller expected and classified (never a bug)."""


class TemporaryError(ControllerError):
    """Try again later; `delay` is the far side's Retry-After in seconds, if it gave one."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(ControllerError):
    """Retrying the same input cannot succeed; `reason` is the condition reason to report."""

    def __init__(self, message: str, *, reason: str = R_INVALID) -> None:
        super().__init__(message)
        self.reason = reason
