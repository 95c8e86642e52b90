from __future__ import annotations

from agc_controller.logs import REDACTED, redact_secrets

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
