"""Logging setup: structlog everywhere, JSON in clusters, readable on a terminal.

Invariant: no Secret data reaches a log line. Every event passes through
`redact_secrets`, which blanks PEM blocks and the values of keys that name
credentials, however deeply they are nested.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", re.DOTALL)
_SECRET_KEYS = frozenset({"data", "stringData", "token", "password", "client_secret", "key"})
REDACTED = "<redacted>"


def _redact(value: Any, *, depth: int = 0) -> Any:
    if depth > 8:
        return value
    if isinstance(value, str):
        return _PEM_BLOCK.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if k in _SECRET_KEYS else _redact(v, depth=depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth=depth + 1) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank PEM blocks and credential-named fields."""
    for key in list(event_dict):
        event_dict[key] = REDACTED if key in _SECRET_KEYS else _redact(event_dict[key])
    return event_dict


def configure(*, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog (and route stdlib logging through the same level).

    `json=None` picks JSON when stderr is not a terminal (a container), and the
    console renderer otherwise.
    """
    if json is None:
        json = not sys.stderr.isatty()
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(name)s: %(message)s")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=True,
    )


class _StderrLogger:
    """Writes to whatever `sys.stderr` is at the time of the call, not at creation.

    Loggers are cached; binding the stream once would keep writing to a stream
    that was swapped out and closed since (test capture, daemonising tools).
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _StderrLoggerFactory:
    def __call__(self, *args: Any) -> _StderrLogger:
        return _StderrLogger()
