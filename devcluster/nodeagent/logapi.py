"""The kubelet API the apiserver's pods/log asks: `GET /containerLogs/{ns}/{pod}/{container}`
(sinceTime, sinceSeconds, tailLines, limitBytes, timestamps, previous, follow,
stream, as kubelet's ReadLogs serves them) and `GET /healthz`, over HTTPS.

The certificate is self-signed and there is no client authentication (the
apiserver verifies neither way without flags ours does not set), so the server
listens on the bridge address only and answers only peers at that address:
host processes. Pods connect from their own IPs and get 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import structlog
from aiohttp import web
from cryptography import x509

from agc_controller.selfsigned import self_signed
from devcluster.nodeagent.crilog import ContainerOutput, log_timestamp

log = structlog.get_logger(__name__)

LOG_READ_CHUNK = 64 * 1024  # bytes read from a log file at a time
LOG_FOLLOW_POLL = 1.0  # seconds between looks at a followed log when no write woke us
KUBELET_SHUTDOWN_TIMEOUT = 1.0  # seconds log requests get to finish when the agent stops


class LogUnavailable(Exception):
    """A log request that cannot be served: `status` and `message` are the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_LOG_STREAMS = {
    "All": frozenset({b"stdout", b"stderr"}),
    "Stdout": frozenset({b"stdout"}),
    "Stderr": frozenset({b"stderr"}),
}


def _query_bool(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "false")
    if value not in _TRUE | _FALSE:
        raise ValueError(f"{name}={value!r} is not a boolean")
    return value in _TRUE


def _query_int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def _parse_since_time(value: str) -> int:
    """An RFC3339 time as nanoseconds since the epoch (UTC when it names no offset)."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"sinceTime={value!r} is not an RFC3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (moment - epoch) // datetime.timedelta(microseconds=1) * 1000


@attrs.frozen
class _LogOptions:
    """kubelet's PodLogOptions, from the query of a containerLogs request."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since: bytes = b""  # a `log_timestamp`; records stamped earlier are left out
    tail_lines: int | None = None  # None: all
    limit_bytes: int | None = None  # None: no limit
    streams: frozenset[bytes] = _LOG_STREAMS["All"]

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> _LogOptions:
        """Raises ValueError (a 400) for what kubelet would not decode or accept."""
        since = b""
        if "sinceTime" in query:
            since = log_timestamp(_parse_since_time(query["sinceTime"]))
        elif (seconds := _query_int(query, "sinceSeconds")) is not None:
            if seconds < 1:
                raise ValueError("sinceSeconds must be greater than 0")
            since = log_timestamp(time.time_ns() - seconds * 1_000_000_000)
        tail = query.get("tailLines", query.get("tail"))
        tail_lines = None if tail in (None, "all") else _query_int({"tailLines": tail}, "tailLines")
        limit_bytes = _query_int(query, "limitBytes")
        if limit_bytes is not None and limit_bytes < 1:
            raise ValueError("limitBytes must be greater than 0")
        stream = query.get("stream", "All")
        if stream not in _LOG_STREAMS:
            raise ValueError(f"invalid stream type {stream!r}")
        return cls(
            follow=_query_bool(query, "follow"),
            previous=_query_bool(query, "previous"),
            timestamps=_query_bool(query, "timestamps"),
            since=since,
            tail_lines=None if tail_lines is None or tail_lines < 0 else tail_lines,
            limit_bytes=limit_bytes,
            streams=_LOG_STREAMS[stream],
        )


def _seek_tail(file: BinaryIO, lines: int) -> None:
    """Position `file` at the start of its last `lines` lines (at its end for 0)."""
    end = file.seek(0, os.SEEK_END)
    if lines <= 0:
        return
    position, found = end, 0
    while position > 0:
        size = min(LOG_READ_CHUNK, position)
        position -= size
        file.seek(position)
        block = file.read(size)
        index = len(block)
        if position + size == end and block.endswith(b"\n"):
            index -= 1  # the newline ending the last line starts no line
        while (index := block.rfind(b"\n", 0, index)) >= 0:
            found += 1
            if found == lines:
                file.seek(position + index + 1)
                return
    file.seek(0)


class _LogFormatter:
    """Turns CRI log records into what kubelet's ReadLogs writes for `options`."""

    def __init__(self, options: _LogOptions) -> None:
        self._options = options
        self._bytes_left = options.limit_bytes
        # with tailLines and no follow, kubelet stops after that many records
        self._records_left = None if options.follow else options.tail_lines
        self._line_start = True  # the last record written ended a line
        self.done = self._records_left == 0

    def feed(self, records: bytes) -> bytes:
        """Whole records (each ending with a newline) in, output bytes out."""
        options = self._options
        out = bytearray()
        for record in records.split(b"\n")[:-1]:
            if self.done:
                break
            fields = record.split(b" ", 3)
            if len(fields) != 4 or fields[2] not in (b"F", b"P"):
                continue  # not a record: kubelet skips what it cannot parse
            timestamp, stream, tag, content = fields
            text = content + b"\n" if tag == b"F" else content
            if timestamp >= options.since and stream in options.streams:
                if options.timestamps and self._line_start:
                    text = timestamp + b" " + text
                if self._bytes_left is not None:
                    text = text[: self._bytes_left]
                    self._bytes_left -= len(text)
                    self.done = self._bytes_left <= 0
                out += text
            self._line_start = tag == b"F"
            if self._records_left is not None:
                self._records_left -= 1
                self.done = self.done or self._records_left <= 0
        return bytes(out)


async def _read_log(
    file: BinaryIO, output: ContainerOutput, options: _LogOptions
) -> AsyncIterator[bytes]:
    """The output for `options` of the log `file` (opened on `output.path`), in chunks.

    With `follow`, waits for more at the end until the output is finished.
    """
    if options.tail_lines is not None:
        await asyncio.to_thread(_seek_tail, file, options.tail_lines)
    formatter = _LogFormatter(options)
    pending = b""
    while not formatter.done:
        # looked at before the read: what was written before the finish is read too
        changed, finished = output.changed(), output.finished
        chunk = await asyncio.to_thread(file.read, LOG_READ_CHUNK)
        if chunk:
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                text = formatter.feed(pending[:cut])
                pending = pending[cut:]
                if text:
                    yield text
            continue
        if not options.follow or finished:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), LOG_FOLLOW_POLL)


_FindOutput = Callable[[str, str, str, bool], ContainerOutput]


class KubeletServer:
    """The kubelet's HTTPS API, as much as the apiserver's pods/log needs (module doc).

    `find_output(namespace, pod, container, previous)` names the output to serve
    or raises LogUnavailable. Listens on `address` only, answers only peers at
    `address` (host processes; pods connect from their own IPs).
    """

    def __init__(
        self, *, address: str, node_name: str, directory: Path, find_output: _FindOutput
    ) -> None:
        self._address = address
        self._node_name = node_name
        self._directory = directory
        self._find_output = find_output
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Serve on a free port of `address`; returns the port."""
        certificate, key = self_signed(
            f"{self._node_name}@agc-node-agent",
            sans=[
                x509.DNSName(self._node_name),
                x509.IPAddress(ipaddress.ip_address(self._address)),
            ],
        )
        self._directory.mkdir(parents=True, exist_ok=True)
        self._directory.chmod(0o700)
        cert_path, key_path = self._directory / "serving.crt", self._directory / "serving.key"
        cert_path.write_text(certificate)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as key_file:
            key_file.write(key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)

        app = web.Application(middlewares=[self._host_only])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        # handler_cancellation: a follow request ends when its client goes away
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=KUBELET_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        self._runner = runner
        protocol_factory = runner.server
        if protocol_factory is None:
            raise RuntimeError("the kubelet API's aiohttp runner has no server after setup")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self._address, 0))
            port: int = sock.getsockname()[1]
            self._server = await asyncio.get_running_loop().create_server(
                protocol_factory, sock=sock, ssl=context
            )
        except BaseException:
            sock.close()
            raise
        log.info("kubelet_api_serving", address=self._address, port=port)
        return port

    def close(self) -> None:
        """Stop listening (synchronous: safe in a `finally` that may be cancelled again)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def stop(self) -> None:
        """Stop listening; requests get KUBELET_SHUTDOWN_TIMEOUT to finish."""
        self.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @web.middleware
    async def _host_only(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        if request.remote != self._address:
            raise web.HTTPForbidden(text=f"only {self._address} may use this kubelet API\n")
        response: web.StreamResponse = await handler(request)
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        try:
            options = _LogOptions.from_query(request.query)
        except ValueError as error:
            return web.Response(status=400, text=f"{error}\n")
        try:
            output = self._find_output(
                info["namespace"], info["pod"], info["container"], options.previous
            )
            file = await asyncio.to_thread(output.path.open, "rb")
        except LogUnavailable as error:
            return web.Response(status=error.status, text=f"{error.message}\n")
        except OSError as error:
            return web.Response(status=400, text=f"failed to open log file: {error}\n")
        with file:
            response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            await response.prepare(request)
            try:
                async for chunk in _read_log(file, output, options):
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client went away
        return response
