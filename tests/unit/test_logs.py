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


def test_the_work_item_field_is_not_mistaken_for_a_credential() -> None:
    # the worker and status writer bind the object they work on as `object`: a
    # field named `key` is a credential's name and would be blanked
    event = redact_secrets(
        None, "info", {"event": "x", "kind": "Gateway", "object": "Gateway/ns/gw", "key": "k"}
    )
    assert event["object"] == "Gateway/ns/gw"
    assert event["key"] == REDACTED
