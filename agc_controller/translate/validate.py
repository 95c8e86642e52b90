"""Validation of user strings before they reach any data plane.

The API server's CRD schema already rejects most bad values, but translation
also runs on files (`agc-controller translate`) and must never trust input:
config injection into a proxy (cf. CVE-2025-1974) is the failure this module
exists to prevent. Every check returns a message naming what is wrong, or None.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from agc_controller.translate.hostnames import is_valid_hostname

MAX_REGEX = 1024
MAX_VALUE = 4096
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")  # RFC 9110 field-name
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PATH = re.compile(r"^/[\x21-\x7e]*$")
_QUERY_NAME = re.compile(r"^[\x21-\x7e]{1,256}$")
_GRPC_SERVICE = re.compile(r"^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$")
_GRPC_METHOD = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


def header_name(value: str) -> str | None:
    return None if _TOKEN.match(value) else f"{value[:64]!r} is not a valid header name"


def header_value(value: str) -> str | None:
    if len(value) > MAX_VALUE:
        return f"the value is longer than {MAX_VALUE} characters"
    if _CONTROL.search(value):
        return "the value contains control characters (such as a newline)"
    return None


def path(value: str) -> str | None:
    if len(value) > MAX_VALUE:
        return f"the path is longer than {MAX_VALUE} characters"
    if not _PATH.match(value):
        return f"{value[:64]!r} must start with '/' and hold only visible ASCII characters"
    return None


def regex(value: str) -> str | None:
    if len(value) > MAX_REGEX:
        return f"the regular expression is longer than {MAX_REGEX} characters"
    if _CONTROL.search(value):
        return "the regular expression contains control characters"
    try:
        re.compile(value)
    except re.error as e:
        return f"{value[:64]!r} is not a valid regular expression: {e}"
    return None


def query_name(value: str) -> str | None:
    return (
        None if _QUERY_NAME.match(value) else f"{value[:64]!r} is not a valid query parameter name"
    )


def method(value: str) -> str | None:
    return None if value in _METHODS else f"{value[:16]!r} is not a supported HTTP method"


def precise_hostname(value: str) -> str | None:
    if is_valid_hostname(value, wildcard=False):
        return None
    return f"{value[:64]!r} is not a valid hostname"


def grpc_service(value: str) -> str | None:
    return None if _GRPC_SERVICE.match(value) else f"{value[:64]!r} is not a valid gRPC service"


def grpc_method(value: str) -> str | None:
    return None if _GRPC_METHOD.match(value) else f"{value[:64]!r} is not a valid gRPC method"


_DURATION = re.compile(r"^(?:[0-9]{1,5}(?:h|m|s|ms)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def is_token(value: object) -> TypeGuard[str]:
    """An RFC 9110 token of 1-256 characters: a header, cookie or field name."""
    return isinstance(value, str) and _TOKEN.match(value) is not None


# RFC 3986 path and query characters: nothing that could end a request line
_REQUEST_PATH = re.compile(r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]{0,1023}$")


def is_request_path(value: object) -> TypeGuard[str]:
    """A path (and query) the data plane may write into a request line it sends
    itself (health probes, authorization checks): starts with /, at most 1024."""
    return isinstance(value, str) and _REQUEST_PATH.match(value) is not None


def int_in(value: object, low: int, high: int) -> TypeGuard[int]:
    """An integer (not a bool) from `low` to `high`, as a policy field must be."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def duration_ms(value: str) -> int | None:
    """A GEP-2257 duration (`1m30s`, `500ms`) in milliseconds, or None if malformed."""
    if not _DURATION.match(value):
        return None
    return sum(int(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART.findall(value))
