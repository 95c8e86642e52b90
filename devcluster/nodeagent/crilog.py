"""Container output in the CRI log format, written as it arrives.

One file per container process: lines `<RFC3339Nano UTC> <stdout|stderr> <F|P>
<text>`, a full (F) record per line, partial (P) records for pieces of a line
longer than LOG_LINE_MAX or still unfinished. The event loop reads the pipes as
they fill, so a process never blocks on its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

LOG_LINE_MAX = 16 * 1024  # bytes of one log record; longer lines become partial (P) records
LOG_DRAIN_GRACE = 1.0  # seconds an exited container's output may still arrive (its children)


def log_timestamp(ns: int) -> bytes:
    """`ns` since the epoch as RFC3339 with nine fraction digits, in UTC (fixed width, so
    that timestamps compare as strings)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{nanos:09d}Z".encode()


def _log_records(timestamp: bytes, stream: bytes, content: bytes, tag: bytes) -> bytes:
    """`content` as CRI log records: partial (P) pieces of LOG_LINE_MAX, then `tag`."""
    records = []
    while len(content) > LOG_LINE_MAX:
        records.append(b"%s %s P %s\n" % (timestamp, stream, content[:LOG_LINE_MAX]))
        content = content[LOG_LINE_MAX:]
    records.append(b"%s %s %s %s\n" % (timestamp, stream, tag, content))
    return b"".join(records)


class ContainerOutput:
    """One container process's stdout and stderr, written to `path` as CRI log records.

    The pipes are read by the event loop as data arrives. A line becomes one
    full (F) record stamped with the time it was read; a line longer than
    LOG_LINE_MAX, or one still unfinished, goes out in partial (P) records of
    that size. `finished` is set once nothing more will be written (both pipes
    closed, or `close()`); every write and the finish set `changed()`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._partial: dict[bytes, bytearray] = {}
        self._transports: dict[bytes, asyncio.BaseTransport] = {}
        self._closed_pipes = asyncio.Event()  # both pipes reached their end
        self._changed = asyncio.Event()  # replaced on every write: each waiter sees it set
        self.finished = False

    async def attach(self, stream: str, fd: int) -> None:
        """Read the pipe `fd` (its read end; closed by us from now on) as `stream`."""
        pipe = os.fdopen(fd, "rb", buffering=0)
        try:
            await asyncio.get_running_loop().connect_read_pipe(
                lambda: _OutputPipe(self, stream.encode()), pipe
            )
        except BaseException:
            pipe.close()
            raise

    def changed(self) -> asyncio.Event:
        """Set at the next write (or the finish)."""
        return self._changed

    def pipe_opened(self, stream: bytes, transport: asyncio.BaseTransport) -> None:
        if self.finished:
            transport.close()
            return
        self._partial[stream] = bytearray()
        self._transports[stream] = transport

    def receive(self, stream: bytes, data: bytes) -> None:
        if self.finished:
            return
        timestamp = log_timestamp(time.time_ns())
        buffer = self._partial[stream]
        buffer += data
        records, start = [], 0
        while (end := buffer.find(b"\n", start)) >= 0:
            records.append(_log_records(timestamp, stream, bytes(buffer[start:end]), b"F"))
            start = end + 1
        del buffer[:start]
        while len(buffer) >= LOG_LINE_MAX:
            records.append(_log_records(timestamp, stream, bytes(buffer[:LOG_LINE_MAX]), b"P"))
            del buffer[:LOG_LINE_MAX]
        self._write(b"".join(records))

    def pipe_closed(self, stream: bytes) -> None:
        if self.finished or self._transports.pop(stream, None) is None:
            return
        self._flush(stream)
        if not self._transports:
            self._closed_pipes.set()

    async def finish(self, grace: float) -> None:
        """Wait up to `grace` seconds for the pipes' end, then `close()`."""
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._closed_pipes.wait()
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (what a pipe left unfinished becomes a last record); finished."""
        if self.finished:
            return
        for stream, transport in list(self._transports.items()):
            self._flush(stream)
            transport.close()
        self._transports.clear()
        self.finished = True
        os.close(self._fd)
        self._notify()

    def _flush(self, stream: bytes) -> None:
        buffer = self._partial.get(stream)
        if buffer:
            self._write(_log_records(log_timestamp(time.time_ns()), stream, bytes(buffer), b"F"))
            buffer.clear()

    def _write(self, data: bytes) -> None:
        if not data:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as error:  # a full disk loses output, not the container
            log.warning("container_log_write_failed", path=str(self.path), error=str(error))
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class _OutputPipe(asyncio.Protocol):
    """Forwards one pipe of a container process to its `ContainerOutput`."""

    def __init__(self, output: ContainerOutput, stream: bytes) -> None:
        self._output = output
        self._stream = stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._output.pipe_opened(self._stream, transport)

    def data_received(self, data: bytes) -> None:
        self._output.receive(self._stream, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._output.pipe_closed(self._stream)
