"""The streams' state on disk: one file per stream, read by NGINX's stream servers.

njs (njs/streams.js) keeps nothing between connections and NGINX 1.22's njs
has no shared memory, so each stream (TLS passthrough by SNI name, TCP, UDP)
is a small JSON file the server reads when a connection starts. A file is
written whole under a temporary name and renamed into place, so a connection
reads either the old or the new backends, never half of them. Files are named
after the stream's key (state.stream_key): `<tcp|udp>-<port>/<hostname>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from agc_controller.core.errors import PermanentError

# state.stream_key's form; hostnames are validated DNS names by translation
_KEY = re.compile(r"^(tcp|udp)-[0-9]{1,5}/(\*|(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?)$")


class UnsafeStreamKey(PermanentError, ValueError):
    """A stream key that must not become a file name."""


class StreamFiles:
    """The stream files of one data plane, written by difference.

    Invariant: when `_known` is not None, the directory holds exactly its files
    with exactly its contents (None after a start or a failed write: read the disk).
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._known: dict[str, bytes] | None = None

    def write(self, streams: Mapping[str, bytes]) -> None:
        """Write every stream of `streams` (key -> JSON) that is new or changed.
        Files of streams that are gone stay until `prune`: a configuration still
        being replaced may read them."""
        for key in streams:
            if not _KEY.match(key) or ".." in key:
                raise UnsafeStreamKey(f"refusing stream key {key[:80]!r} as a file name")
        known, self._known = self._known, None
        for key, text in streams.items():
            path = self._dir / key
            if known is not None and known.get(key) == text:
                continue
            if known is None and _read(path) == text:
                continue
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            staged = path.with_name(f".{path.name}.new")
            staged.write_bytes(text)
            staged.chmod(0o644)  # the workers (user nobody) read it
            staged.replace(path)
        self._known = {**(known or {}), **streams}

    def prune(self, streams: Mapping[str, bytes]) -> None:
        """Remove the files of streams not in `streams`, and ports left without any."""
        if self._known is not None:
            gone = [self._dir / key for key in self._known if key not in streams]
        elif self._dir.is_dir():
            gone = [path for path in self._dir.glob("*/*") if _key(path) not in streams]
        else:
            gone = []
        for path in gone:
            path.unlink(missing_ok=True)
            if not any(path.parent.iterdir()):
                path.parent.rmdir()
        self._known = dict(streams)


def _key(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
