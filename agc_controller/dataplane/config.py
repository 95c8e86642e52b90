"""What the controller delivers to a data-plane agent, and what the agent reports back.

Delivery: a Gateway's router state is a set of named parts (dynamic.StateParts:
"meta", "b:<backend>", "r:<rule>", "h:<listener>:<hostname>"), spread over
SHARDS shard Secrets by a stable hash of the part name (`shard_of`), plus a
manifest in the Gateway's main Secret. Secrets, because the state holds
private keys. Why shards: at thousands of routes the state is megabytes; as one
document, every one-route change re-encoded and rewrote all of it, and every
agent downloaded and decoded all of it. Sharded, a change rewrites the shards
holding the parts that changed (one or two for a route edit) and the small
manifest, and an agent fetches just those shards.

- A shard `<name>-s<kk>` (`shard_name`) holds `{"<part name>": <part>, ...}`:
  names sorted, each part the JSON text the router stores (dynamic.encode) as
  is, so the controller makes a shard by joining the parts it already holds and
  the agent hands them on unchanged. Only non-empty shards exist. Its digest
  (sha256 of the document) is also in the DIGEST annotation, for people.
- The manifest `{"format", "shards", "static"}`: the digest of each non-empty
  shard by number (`"07"`), and the static needs (ports, upstream TLS).

Each document is canonical JSON, stored under its key (`config.json`,
`parts.json`), or gzipped (level and mtime fixed: the same document always
compresses to the same bytes) under `<key>.gz` when larger than
COMPRESS_ABOVE; each must fit the apiserver's 1 MiB limit on a Secret's data,
or the configuration is refused (`ConfigTooLarge`, naming the shard).

Why SHARDS = 16, and crc32: the part → shard mapping must be the same in every
controller replica and agent, in every process (Python's `hash` is salted per
process), and the set of shard names fixed, since the agent's Role lists them
all. At 5,000 routes (tests/bench/bench_delivery.py) the state is 4.7 MB of
JSON, a shard ~300 KB and ~7 KB gzipped: a route edit sends ~11 KB of Secret
data (the shard and the 1.7 KB manifest) where the single document sent its
~96 KB whole. More shards would shrink a shard further, but not the manifest
(which lists them all), the report or the per-object overhead, and they
multiply the Secrets per Gateway and the GETs of an agent that starts.
Together the shards take 16 MiB compressed, where the single document took
1 MiB. Changing SHARDS moves parts between shards: it needs a new FORMAT.

Versioning: a configuration's version is a digest of the manifest's bytes.
The manifest names every shard's digest, so the controller and every agent
compute the same version for the same content without coordinating, and an
unchanged configuration has an unchanged version (nothing is rewritten or
re-applied). The controller also writes it in the VERSION annotation, for people.

Write order (provider.py): the changed shards, then the manifest, then the
deletion of shards it no longer lists; so a manifest only names shards already
written, and an agent that finds a listed shard gone or holding another digest
is looking at a write in progress, not at a configuration: it waits for the
next manifest (or retries), and never applies a mix.

Reporting: an agent that applied or refused a version writes a `Report` (JSON)
into the main Secret's APPLIED annotation, with a merge patch of that
annotation only (it owns no other field, so the controller's server-side apply
and the agent never conflict). Every replica reports once per version it
handles, and again when its mesh identity changes (mesh mTLS: a certificate
obtained or renewed, a problem appearing or clearing); the last writer wins,
which is enough because replicas run the same image on the same input and so
reach the same verdict. The mesh fields are the writer's own (each pod has its
own certificate, renewed on its own schedule). A report without mesh fields
(mesh mTLS off, or an agent of before) reads as one whose mesh fields are empty.

Invariant: `decode_manifest` and `decode_shard` either return exactly what
`Manifest` and `shard_document` encoded, or raise `DecodeError`; a partial or
foreign document is never applied.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Mapping
from typing import Any

import attrs

from agc_controller.core.errors import PermanentError
from agc_controller.dataplane.codec import DecodeError, structure, unstructure
from agc_controller.providers.local.dynamic import StaticNeeds, encode

FORMAT = 2
# parts are spread over this many shards (fixed: see the module docstring)
SHARDS = 16
MANIFEST_KEY = "config.json"
SHARD_KEY = "parts.json"
# appended to a key whose document is stored gzipped
GZIP_SUFFIX = ".gz"
# documents above this many bytes are stored gzipped
COMPRESS_ABOVE = 4 * 1024
# zlib's default: a 300 KB shard (5,000 routes) takes 0.7 ms and 7 % more bytes
# than at level 9, which takes 4.5 ms
COMPRESS_LEVEL = 6
# the apiserver refuses Secrets whose data exceeds 1 MiB
SECRET_DATA_LIMIT = 1024 * 1024

VERSION_ANNOTATION = "dataplane.agc-controller.io/version"
APPLIED_ANNOTATION = "dataplane.agc-controller.io/applied"
DIGEST_ANNOTATION = "dataplane.agc-controller.io/digest"

# a shard's number as the manifest writes it -> the number
_SHARD_KEYS = {f"{shard:02d}": shard for shard in range(SHARDS)}
_DIGEST = re.compile(r"[0-9a-f]{64}")


class ConfigTooLarge(PermanentError, ValueError):
    """A document of the configuration does not fit in a Secret even compressed."""


def shard_of(part: str) -> int:
    """The shard that holds the part named `part`."""
    return zlib.crc32(part.encode()) % SHARDS


def shard_name(name: str, shard: int) -> str:
    """The Secret of shard `shard` of the configuration in Secret `name`. With
    `name` an object_name (at most 63 characters), at most 67: a DNS subdomain."""
    return f"{name}-s{shard:02d}"


def digest(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()


def shard_document(parts: Mapping[str, bytes]) -> bytes:
    """The canonical document of a shard holding `parts` (name -> the part's JSON)."""
    return b"{%s}" % b",".join(
        json.dumps(name).encode() + b":" + parts[name] for name in sorted(parts)
    )


@attrs.frozen
class Shard:
    """What one shard Secret holds, as an agent read it."""

    # of the shard's document; what the manifest lists
    digest: str
    # part name -> the part's JSON; every name's shard_of is this shard
    parts: Mapping[str, bytes]


@attrs.frozen
class Manifest:
    """The main Secret's document: what makes up the configuration, and its version."""

    needs: StaticNeeds
    # shard -> the digest of its document, for the non-empty shards only
    shards: Mapping[int, str]
    # canonical JSON of the manifest; the version is its digest
    payload: bytes = attrs.field(init=False, repr=False)

    @payload.default
    def _payload(self) -> bytes:
        document = {
            "format": FORMAT,
            "shards": {f"{shard:02d}": d for shard, d in self.shards.items()},
            "static": unstructure(self.needs),
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @property
    def version(self) -> str:
        return digest(self.payload)[:16]


def encode_manifest(manifest: Manifest) -> dict[str, str]:
    """The main Secret's `data` (base64 values) carrying `manifest`."""
    return _data(MANIFEST_KEY, manifest.payload, "The data-plane configuration's manifest")


def encode_shard(shard: int, parts: Mapping[str, bytes]) -> dict[str, str]:
    """The `data` of the Secret of shard `shard`, holding `parts`."""
    return _data(
        SHARD_KEY,
        shard_document(parts),
        f"Shard {shard:02d} of the data-plane configuration ({len(parts)} parts)",
    )


def _data(key: str, document: bytes, what: str) -> dict[str, str]:
    if len(document) > COMPRESS_ABOVE:
        key, document = (
            key + GZIP_SUFFIX,
            gzip.compress(document, compresslevel=COMPRESS_LEVEL, mtime=0),
        )
    if len(document) > SECRET_DATA_LIMIT:
        raise ConfigTooLarge(
            f"{what} is {len(document)} bytes compressed, over the "
            f"{SECRET_DATA_LIMIT} byte limit of a Secret."
        )
    return {key: base64.b64encode(document).decode()}


def decode_manifest(secret: Mapping[str, Any]) -> Manifest:
    """The manifest the main Secret carries."""
    raw = _document(secret, MANIFEST_KEY)
    document = _json(raw)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DecodeError(f"not a format {FORMAT} data-plane configuration")
    listed = document.get("shards")
    if not isinstance(listed, dict):
        raise DecodeError("the configuration has no shards object")
    shards = {}
    for key, value in listed.items():
        if key not in _SHARD_KEYS:
            raise DecodeError(f"shards: {key!r} is not a shard number")
        if not isinstance(value, str) or not _DIGEST.fullmatch(value):
            raise DecodeError(f"shards.{key}: not a sha256 digest")
        shards[_SHARD_KEYS[key]] = value
    manifest = Manifest(needs=structure(document.get("static"), StaticNeeds), shards=shards)
    if manifest.payload != raw:
        # not what the controller writes: refuse rather than guess at a version
        raise DecodeError("the configuration is not in canonical form")
    return manifest


def decode_shard(secret: Mapping[str, Any], shard: int) -> Shard:
    """The parts the Secret of shard `shard` carries."""
    try:
        raw = _document(secret, SHARD_KEY)
        document = _json(raw)
    except DecodeError as e:
        raise DecodeError(f"shard {shard:02d}: {e}") from e
    if not isinstance(document, dict):
        raise DecodeError(f"shard {shard:02d} is not a JSON object")
    parts = {name: encode(value) for name, value in document.items()}
    stray = next((name for name in parts if shard_of(name) != shard), None)
    if stray is not None:
        raise DecodeError(f"part {stray!r} does not belong in shard {shard:02d}")
    if shard_document(parts) != raw:
        raise DecodeError(f"shard {shard:02d} is not in canonical form")
    return Shard(digest=digest(raw), parts=parts)


def _document(secret: Mapping[str, Any], key: str) -> bytes:
    """The document stored under `key` in a Secret, or under `key`.gz gzipped."""
    data = secret.get("data") or {}
    if key + GZIP_SUFFIX in data:
        encoded, gzipped = data[key + GZIP_SUFFIX], True
    elif key in data:
        encoded, gzipped = data[key], False
    else:
        raise DecodeError(f"the Secret has neither {key} nor {key}{GZIP_SUFFIX}")
    try:
        raw = base64.b64decode(encoded, validate=True)
        return gzip.decompress(raw) if gzipped else raw
    except (ValueError, OSError, EOFError) as e:  # binascii and gzip errors
        raise DecodeError(f"unreadable {key}: {e}") from e


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as e:
        raise DecodeError(f"unreadable configuration: {e}") from e


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
    # mesh mTLS (the pod's own workload certificate, which the agent obtains and
    # keeps current): the SPIFFE ID of the certificate NGINX presents to backends
    # in the mesh; empty: none yet, or mesh mTLS is off
    mesh_identity: str = ""
    # when that certificate expires (RFC 3339); empty with mesh_identity
    mesh_expires: str = ""
    # why the pod has no certificate, or why renewing it fails; empty: no problem
    mesh_problem: str = ""

    def annotation(self) -> str:
        # the mesh fields only when set: without mesh mTLS a report reads as it did
        # before they existed, also to a controller of before
        document = attrs.asdict(
            self, filter=lambda field, value: bool(value) or not field.name.startswith("mesh_")
        )
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

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
