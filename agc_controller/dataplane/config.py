"""What the controller delivers to a data-plane agent, and what the agent reports back.

Delivery: one Secret per Gateway (a Secret because the state holds private
keys). Its data holds one JSON document, `{"format", "state", "static"}`: the
router's state document (dynamic.py's `build_state`, without the static id,
which depends on where the agent renders its files) and the static needs
(ports, upstream TLS). The document goes under `config.json`, or gzipped under
`config.json.gz` when it is larger than COMPRESS_ABOVE, so that large route
tables still fit the apiserver's 1 MiB limit on a Secret.

Versioning: a configuration's version is a digest of the document's bytes, so
the controller and every agent compute the same version for the same content
without coordinating, and an unchanged configuration has an unchanged version
(the Secret is not rewritten, nothing is re-applied). The controller also
writes it in the VERSION annotation, for people.

Reporting: an agent that applied or refused a version writes a `Report` (JSON)
into the Secret's APPLIED annotation, with a merge patch of that annotation
only (it owns no other field, so the controller's server-side apply and the
agent never conflict). Every replica reports once per version it handles; the
last writer wins, which is enough because replicas run the same image on the
same input and so reach the same verdict.

Invariant: `decode` either returns the exact configuration that `encode` was
given or raises `DecodeError`; a partial or foreign document is never applied.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from typing import Any

import attrs

from agc_controller.core.errors import PermanentError
from agc_controller.dataplane.codec import DecodeError, structure, unstructure
from agc_controller.providers.local.dynamic import StaticNeeds

FORMAT = 1
DATA_KEY = "config.json"
GZIP_DATA_KEY = "config.json.gz"
# documents above this many bytes are stored gzipped
COMPRESS_ABOVE = 64 * 1024
# the apiserver refuses Secrets whose data exceeds 1 MiB
SECRET_DATA_LIMIT = 1024 * 1024

VERSION_ANNOTATION = "dataplane.agc-controller.io/version"
APPLIED_ANNOTATION = "dataplane.agc-controller.io/applied"


class ConfigTooLarge(PermanentError, ValueError):
    """The configuration does not fit in a Secret even compressed."""


@attrs.frozen
class DataPlaneConfig:
    # the router's state document, as build_state made it (no "static" id)
    state: dict[str, Any]
    needs: StaticNeeds
    # canonical JSON of the whole document; the version is its digest
    payload: bytes = attrs.field(init=False, repr=False)

    @payload.default
    def _payload(self) -> bytes:
        document = {"format": FORMAT, "state": self.state, "static": unstructure(self.needs)}
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @property
    def version(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()[:16]


def encode(config: DataPlaneConfig) -> dict[str, str]:
    """The Secret `data` (base64 values) carrying `config`."""
    key, raw = DATA_KEY, config.payload
    if len(raw) > COMPRESS_ABOVE:
        # mtime=0: the same configuration always compresses to the same bytes
        key, raw = GZIP_DATA_KEY, gzip.compress(raw, mtime=0)
    if len(raw) > SECRET_DATA_LIMIT:
        raise ConfigTooLarge(
            f"The data-plane configuration is {len(raw)} bytes compressed, over the "
            f"{SECRET_DATA_LIMIT} byte limit of a Secret."
        )
    return {key: base64.b64encode(raw).decode()}


def decode(secret: dict[str, Any]) -> DataPlaneConfig:
    """The configuration a delivery Secret carries."""
    data = secret.get("data") or {}
    try:
        if GZIP_DATA_KEY in data:
            raw = gzip.decompress(base64.b64decode(data[GZIP_DATA_KEY], validate=True))
        elif DATA_KEY in data:
            raw = base64.b64decode(data[DATA_KEY], validate=True)
        else:
            raise DecodeError(f"the Secret has neither {DATA_KEY} nor {GZIP_DATA_KEY}")
        document = json.loads(raw)
    except (ValueError, OSError, EOFError) as e:  # binascii, gzip and JSON errors
        raise DecodeError(f"unreadable configuration: {e}") from e
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DecodeError(f"not a format {FORMAT} data-plane configuration")
    state = document.get("state")
    if not isinstance(state, dict):
        raise DecodeError("the configuration has no state object")
    config = DataPlaneConfig(state=state, needs=structure(document.get("static"), StaticNeeds))
    if config.payload != raw:
        # not what encode() writes: refuse rather than guess at a version
        raise DecodeError("the configuration is not in canonical form")
    return config


@attrs.frozen(kw_only=True)
class Report:
    """One agent's verdict on one configuration version."""

    version: str
    # True: NGINX runs it; False: refused (the last good configuration keeps serving)
    accepted: bool
    # why it was refused; empty when accepted
    message: str = ""
    # the reporting pod
    pod: str = ""

    def annotation(self) -> str:
        return json.dumps(attrs.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_annotations(cls, annotations: dict[str, str] | None) -> Report | None:
        """The report in `annotations`, or None if there is none (or it is unreadable)."""
        text = (annotations or {}).get(APPLIED_ANNOTATION)
        if text is None:
            return None
        try:
            return structure(json.loads(text), cls)
        except (ValueError, TypeError):
            return None
