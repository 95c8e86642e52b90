from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog

from agc_controller.logs import REDACTED, configure, redact_secrets

PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----"


def test_pem_blocks_are_blanked_wherever_they_are() -> None:
    event = redact_secrets(None, "info", {"event": "x", "obj": {"spec": [f"a {PEM} b"]}})
    assert event["obj"] == {"spec": [f"a {REDACTED} b"]}


def test_credential_fields_are_blanked_and_others_kept() -> None:
    event = redact_secrets(
        None,
        "info",
        {"event": "x", "token": "abc", "secret": {"data": {"tls.crt": "Zm9v"}, "type": "t"}},
    )
    assert event["token"] == REDACTED
    assert event["secret"] == {"data": REDACTED, "type": "t"}
    assert event["event"] == "x"


def test_the_work_item_field_is_not_mistaken_for_a_credential() -> None:
    # the worker and status writer bind the object they work on as `object`: a
    # field named `key` is a credential's name and would be blanked
    event = redact_secrets(
        None, "info", {"event": "x", "kind": "Gateway", "object": "Gateway/ns/gw", "key": "k"}
    )
    assert event["object"] == "Gateway/ns/gw"
    assert event["key"] == REDACTED


class _Stream(io.StringIO):
    """A stderr that says whether it is a terminal."""

    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _log_through(
    monkeypatch: pytest.MonkeyPatch, *, tty: bool, json_logs: bool | None = None
) -> str:
    stream = _Stream(tty=tty)
    monkeypatch.setattr(sys, "stderr", stream)
    configure(json=json_logs)
    structlog.get_logger("test").info("event_name", obj={"pem": PEM}, token="abc")
    return stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_a_terminal_gets_readable_logs_with_secrets_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _log_through(monkeypatch, tty=True)
    assert "event_name" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    assert "MIGHAgEAMBMGByqGSM49" not in out
    assert "abc" not in out
    assert REDACTED in out


@pytest.mark.usefixtures("restore_logging")
def test_anything_else_gets_json_with_secrets_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    event = json.loads(_log_through(monkeypatch, tty=False))
    assert event["event"] == "event_name"
    assert event["obj"] == {"pem": REDACTED}
    assert event["token"] == REDACTED


@pytest.mark.usefixtures("restore_logging")
def test_an_explicit_format_wins_over_the_terminal_test(monkeypatch: pytest.MonkeyPatch) -> None:
    assert json.loads(_log_through(monkeypatch, tty=True, json_logs=True))["event"] == "event_name"
    with pytest.raises(json.JSONDecodeError):
        json.loads(_log_through(monkeypatch, tty=False, json_logs=False))
