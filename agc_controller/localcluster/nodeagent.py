"""A local pod runtime: kubelet and scheduler for one node, pods as local processes.

The Gateway API conformance suite (and our e2e tests) deploy echo backends as
Deployments, wait for their pods to be Ready and send traffic to the Gateway,
which proxies to the pod IPs kube-controller-manager publishes in
EndpointSlices. There is no kubelet, scheduler or container runtime here, so
this agent plays them for one node:

- Node: registers `node_name` (Ready, InternalIP = the pod network's gateway,
  capacity, podCIDR, the kubelet port) and keeps it alive with a Lease in
  kube-node-lease and a NodeReady heartbeat, so that the node lifecycle
  controller never evicts it. InternalIP is its only address: the apiserver
  reaches a kubelet at the first address of --kubelet-preferred-address-types
  (Hostname first by default), and the node name does not resolve.
- Scheduling: binds every pod without a node that asks for the default
  scheduler, has no scheduling gates and whose nodeSelector our labels satisfy.
- Pods: each gets a network namespace with its own IP (podnet.py). An "image"
  is an image repository mapped to an argv on this host; containers run as
  processes in the pod's namespace, each in a private mount and UTS namespace
  where the pod's volumes (secret, configMap, emptyDir, downwardAPI, projected,
  hostPath), written under state_dir/pods/<uid>/volumes/, are bind-mounted.
- Logs: the agent reads each process's stdout and stderr through pipes, as
  they fill (a process never blocks on its output), and writes them in the CRI
  log format, one file per process: state_dir/pods/<uid>/logs/<container>/<n>.log,
  lines `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>`. A container keeps
  the files of its current and its previous process (`previous=true`); they
  are not rotated, and stay on disk after the pod is gone (for post-mortems).
- Kubelet API (`_KubeletServer`): HTTPS on InternalIP, port in the Node's
  daemonEndpoints, serving `GET /containerLogs/{ns}/{pod}/{container}` (so
  `kubectl logs` / pods/log work: sinceTime, sinceSeconds, tailLines,
  limitBytes, timestamps, previous, follow, stream) and `GET /healthz`. The
  certificate is self-signed: the apiserver verifies a kubelet's certificate
  only with --kubelet-certificate-authority, which ours does not set, and it
  presents no client certificate (no --kubelet-client-certificate), so there is
  no authentication. Instead the server listens on the bridge address only,
  and answers only connections from that same address, i.e. from host
  processes: pods, whose source is their pod IP, get 403.
- Status: phase, IPs, conditions and container states come from the processes'
  real state; readiness from the readinessProbe or, without one, from the
  process serving (see `_PodRunner._wait_until_serving`).

Invariants:
- One task per pod (`_PodRunner`). Whatever goes wrong with a pod is logged,
  shown in its status and retried; it never stops the agent or another pod.
- A pod's processes are stopped before its sandbox is destroyed, and the
  sandbox before the object is deleted (gracePeriodSeconds=0, as a kubelet does).
- Cancelling `NodeAgent.run()` stops every process and removes every namespace
  and link the agent made, even when the graceful clean-up is itself cancelled.
- Status goes through the status subresource and is written only when it
  differs from the object's (transition times kept); a 409 means re-read.

What a container sees that a real one would not: the host's filesystem.
Mount points (and workingDir) missing on the host are created there, empty, so
that the bind mount has somewhere to go; they stay after the pod is gone.
Not implemented: liveness and startup probes, lifecycle hooks, resource limits,
service links, hostNetwork pods, volume content updates after a container
started, gRPC probes (checked as a TCP connect to the probe's port), node
affinity and taints (this is the only node), the kubelet API beyond logs and
healthz (exec, attach, port-forward, stats). Probes always target the pod IP.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import platform
import posixpath
import re
import shlex
import shutil
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import attrs
import structlog
from aiohttp import web
from cryptography import x509
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller import logs
from agc_controller.core.clock import SystemClock
from agc_controller.core.resources import Resource
from agc_controller.informers import ApiListWatcher, Informer, KubeObject, drop_managed_fields
from agc_controller.informers import object_key as _object_key
from agc_controller.kube import api_client_from_kubeconfig
from agc_controller.localcluster.podnet import PodNetwork, PodNetworkError, PodSandbox
from agc_controller.selfsigned import self_signed

log = structlog.get_logger(__name__)

POD = Resource("", "v1", "pods", "Pod", namespaced=True)

HEARTBEAT_PERIOD = 10.0  # seconds between Lease renewals and NodeReady heartbeats
LEASE_DURATION_SECONDS = 40  # what kubelet uses; the node controller's grace is longer
MAX_TERMINATION_GRACE = 10.0  # cap on a pod's terminationGracePeriodSeconds (seconds)
SHUTDOWN_GRACE = 3.0  # grace for every pod when the agent itself stops (seconds)
RESTART_BACKOFF = (1.0, 10.0)  # first and longest delay before restarting a container
BACKOFF_RESET_AFTER = 60.0  # a container that ran this long restarts after the first delay
NON_LISTENER_READY_AFTER = 1.0  # seconds a probe-less, port-less non-server runs before Ready
IDLE_FOR = 0.3  # seconds without CPU use after which a process that is not listening is no server
SERVING_POLL = 0.1  # seconds between checks that a probe-less container serves
CONFIG_RETRY = 2.0  # seconds between attempts to resolve a container's env or volumes
STATUS_COALESCE = 0.05  # changes within this many seconds share one status write
REQUEST_TIMEOUT = 30.0  # seconds per API request
CONNECT_TIMEOUT = 1.0  # seconds for a readiness check's TCP connect
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_LINE_MAX = 16 * 1024  # bytes of one log record; longer lines become partial (P) records
LOG_DRAIN_GRACE = 1.0  # seconds an exited container's output may still arrive (its children)
LOG_READ_CHUNK = 64 * 1024  # bytes read from a log file at a time
LOG_FOLLOW_POLL = 1.0  # seconds between looks at a followed log when no write woke us
KUBELET_SHUTDOWN_TIMEOUT = 1.0  # seconds log requests get to finish when the agent stops
DEFAULT_SCHEDULERS = frozenset({"", "default-scheduler"})
_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def image_repository(image: str) -> str:
    """`registry/path/name` of `registry/path/name:tag@digest` (the key of `images`)."""
    name = image.split("@", 1)[0]
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name


_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` escapes, unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        return env.get(match.group(2), match.group(0))

    return _REFERENCE.sub(replace, text)


class _ConfigError(Exception):
    """A container cannot start yet; `reason`/`message` go into its Waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@attrs.frozen
class _HostTools:
    """Absolute paths of the programs containers are started with."""

    ip: str
    unshare: str
    setpriv: str
    nsenter: str
    mount: str
    mkdir: str
    sh: str

    @classmethod
    def find(cls) -> _HostTools:
        names = [field.name for field in attrs.fields(cls)]
        found = {name: shutil.which(name) for name in names}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise RuntimeError(
                f"the node agent needs {', '.join(missing)} on PATH (iproute2, util-linux)"
            )
        return cls(**{name: str(path) for name, path in found.items()})


class _Api:
    """Raw JSON calls through a kubernetes-asyncio ApiClient (objects stay dicts)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        result = await self._api.call_api(
            path,
            method,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return result if isinstance(result, dict) else {}


_API_ERRORS = (ApiException, aiohttp.ClientError, OSError, TimeoutError)


class _ObjectReader:
    """Secrets and ConfigMaps of one namespace, each read at most once per reader."""

    def __init__(self, api: _Api, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self._data: dict[tuple[str, str], dict[str, bytes] | None] = {}

    async def data(self, plural: str, name: str) -> dict[str, bytes] | None:
        """The object's data decoded to bytes; None if it does not exist."""
        key = (plural, name)
        if key not in self._data:
            try:
                obj = await self._api.call(
                    "GET", f"/api/v1/namespaces/{self._namespace}/{plural}/{name}"
                )
            except ApiException as error:
                if error.status != 404:
                    raise
                self._data[key] = None
            else:
                decoded = {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
                for k, v in (obj.get("data") or {}).items():
                    decoded[k] = base64.b64decode(v) if plural == "secrets" else v.encode()
                self._data[key] = decoded
        return self._data[key]


_KIND_OF_PLURAL = {"secrets": "secret", "configmaps": "configmap"}


async def _key_value(reader: _ObjectReader, plural: str, ref: Mapping[str, Any]) -> bytes | None:
    """One key of a Secret or ConfigMap (secretKeyRef / configMapKeyRef); None if optional."""
    name, key, optional = ref.get("name", ""), ref["key"], bool(ref.get("optional"))
    data = await reader.data(plural, name)
    kind = _KIND_OF_PLURAL[plural]
    if data is None:
        if optional:
            return None
        raise _ConfigError("CreateContainerConfigError", f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise _ConfigError(
            "CreateContainerConfigError", f"couldn't find key {key} in {kind} {name}"
        )
    return data[key]


_LABEL_OR_ANNOTATION = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]")


def _field_value(pod: KubeObject, path: str, *, pod_ip: str, host_ip: str) -> str:
    """A downward-API fieldRef of the pod, as an env var or file sees it."""
    metadata = pod["metadata"]
    spec = pod["spec"]
    if match := _LABEL_OR_ANNOTATION.fullmatch(path):
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = metadata.get(path.split(".")[1]) or {}
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))
    simple = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in simple:
        raise _ConfigError(
            "CreateContainerConfigError", f"fieldRef {path} is not supported by the node agent"
        )
    return str(simple[path])


@attrs.frozen
class _File:
    path: str  # relative to the volume's directory
    content: bytes
    mode: int


@attrs.frozen
class _Volume:
    path: Path  # the host directory (or file) bind-mounted into containers
    read_only: bool  # secret, configMap, downwardAPI and projected volumes always are


@attrs.frozen
class _Mount:
    source: Path
    target: str
    read_only: bool
    is_file: bool


@attrs.frozen
class _Launch:
    """Everything a container's process is started with."""

    argv: tuple[str, ...]
    env: dict[str, str]
    mounts: tuple[_Mount, ...]
    working_dir: str
    image_id: str
    # argv[0] with every symbolic link resolved: the file a mount may hide
    executable: str


# -- container output -------------------------------------------------------------------


def _log_timestamp(ns: int) -> bytes:
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


class _ContainerOutput:
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
        timestamp = _log_timestamp(time.time_ns())
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
            self._write(_log_records(_log_timestamp(time.time_ns()), stream, bytes(buffer), b"F"))
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
    """Forwards one pipe of a container process to its `_ContainerOutput`."""

    def __init__(self, output: _ContainerOutput, stream: bytes) -> None:
        self._output = output
        self._stream = stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._output.pipe_opened(self._stream, transport)

    def data_received(self, data: bytes) -> None:
        self._output.receive(self._stream, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._output.pipe_closed(self._stream)


class _LogUnavailable(Exception):
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
    since: bytes = b""  # a `_log_timestamp`; records stamped earlier are left out
    tail_lines: int | None = None  # None: all
    limit_bytes: int | None = None  # None: no limit
    streams: frozenset[bytes] = _LOG_STREAMS["All"]

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> _LogOptions:
        """Raises ValueError (a 400) for what kubelet would not decode or accept."""
        since = b""
        if "sinceTime" in query:
            since = _log_timestamp(_parse_since_time(query["sinceTime"]))
        elif (seconds := _query_int(query, "sinceSeconds")) is not None:
            if seconds < 1:
                raise ValueError("sinceSeconds must be greater than 0")
            since = _log_timestamp(time.time_ns() - seconds * 1_000_000_000)
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
    file: BinaryIO, output: _ContainerOutput, options: _LogOptions
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


@attrs.define(eq=False)
class _Container:
    """One container's runtime state; `status()` is its entry in the pod status."""

    name: str
    kind: str  # "init" (runs to completion), "sidecar" (init with restartPolicy Always), "regular"
    state: dict[str, Any]  # {"waiting": {...}} | {"running": {...}} | {"terminated": {...}}
    last_state: dict[str, Any] = attrs.field(factory=dict)
    restart_count: int = 0
    ready: bool = False
    image_id: str = ""
    container_id: str = ""
    # set once the first process of this container runs (sidecars gate the next init container)
    first_start: asyncio.Event = attrs.field(factory=asyncio.Event)
    processes_started: int = 0  # numbers the log files
    # the output of its latest two processes (current and previous) by container ID, oldest first
    outputs: dict[str, _ContainerOutput] = attrs.field(factory=dict)

    def keep_output(self, container_id: str, output: _ContainerOutput) -> None:
        """Remember the output of a new process; forget (and delete) the one before previous."""
        self.outputs[container_id] = output
        while len(self.outputs) > 2:
            oldest = self.outputs.pop(next(iter(self.outputs)))
            oldest.close()
            oldest.path.unlink(missing_ok=True)

    def status(self, image: str) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": image,
            "imageID": self.image_id,
            "ready": self.ready,
            "started": "running" in self.state,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def _waiting(reason: str, message: str = "") -> dict[str, Any]:
    waiting = {"reason": reason}
    if message:
        waiting["message"] = message
    return {"waiting": waiting}


def _restarts(policy: str, kind: str, returncode: int) -> bool:
    if kind == "sidecar":
        return True
    if kind == "init":
        return returncode != 0 and policy != "Never"
    return policy == "Always" or (policy == "OnFailure" and returncode != 0)


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # every container process leads its own session, so the group holds its children too
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


def _cpu_ticks(pid: int) -> int:
    """CPU time (clock ticks) used so far by `pid` and its descendants alive now."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
            total += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def _netns_has_listener(pid: int, netns: str) -> bool:
    """A listening TCP or bound UDP socket in `netns`, seen through `pid`.

    False while `pid` is not (yet) in `netns`: right after the spawn it is still
    `ip netns exec` in the host's namespace, whose sockets must not count.
    """
    try:
        mine, pods = os.stat(f"/proc/{pid}/ns/net"), os.stat(f"/run/netns/{netns}")
    except OSError:
        return False
    if (mine.st_dev, mine.st_ino) != (pods.st_dev, pods.st_ino):
        return False
    for table, listening in (("tcp", "0A"), ("tcp6", "0A"), ("udp", None), ("udp6", None)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and (listening is None or fields[3] == listening):
                return True
    return False


async def _accepts(address: str, port: int) -> bool:
    """Does `address:port` accept a TCP connection? The caller bounds the wait."""
    try:
        _, writer = await asyncio.open_connection(address, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _real_path(path: str) -> str:
    return os.path.realpath(path)


def _find_executable(name: str) -> str | None:
    if "/" in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def _wrapper_script(
    tools: _HostTools,
    *,
    hostname: str,
    mounts: Sequence[_Mount],
    working_dir: str,
    volumes_root: Path,
    executable: str,
) -> str:
    """sh run inside the pod's namespaces: set the hostname, bind the volumes, exec.

    A volume mounted over a directory of the host (a ConfigMap at /root, with the
    agent's state and the image binaries under /root/.cache) hides what is below
    it: the other mounts' sources are reached through a descriptor of
    `volumes_root` opened before the first mount (closed before the exec), and an
    `executable` a mount hides is run through a descriptor too.
    """
    q = shlex.quote
    hidden = any(
        executable == m.target or executable.startswith(m.target.rstrip("/") + "/") for m in mounts
    )
    lines = [
        "set -e",
        f"echo {q(hostname)} > /proc/sys/kernel/hostname",
        f"exec 3< {q(str(volumes_root))}",
    ]
    if hidden:
        lines.append('exec 4< "$1"')
    for mount in mounts:
        target = q(mount.target)
        source = str(mount.source)
        if mount.source.is_relative_to(volumes_root):
            source = posixpath.join("/proc/self/fd/3", str(mount.source.relative_to(volumes_root)))
        if mount.is_file:
            lines.append(f"{q(tools.mkdir)} -p -- {q(posixpath.dirname(mount.target))}")
            lines.append(f"[ -e {target} ] || : > {target}")
        else:
            lines.append(f"{q(tools.mkdir)} -p -- {target}")
        lines.append(f"{q(tools.mount)} --bind -- {q(source)} {target}")
        if mount.read_only:
            lines.append(f"{q(tools.mount)} -o remount,bind,ro -- {target}")
    lines.append("exec 3<&-")
    lines.append(f"{q(tools.mkdir)} -p -- {q(working_dir)}")
    lines.append(f"cd -- {q(working_dir)}")
    lines.append('shift; exec /proc/self/fd/4 "$@"' if hidden else 'exec "$@"')
    return "\n".join(lines)


def _write_volume(directory: Path, files: Sequence[_File]) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o755)
    for file in files:
        target = (directory / file.path).resolve()
        if not target.is_relative_to(directory.resolve()) or target == directory.resolve():
            raise _ConfigError("ContainerCreating", f"volume file path {file.path!r} is invalid")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)
        target.chmod(file.mode & 0o777)


@attrs.define(eq=False)
class _Node:
    """What every pod runner shares: the API, the tools, the network, the images."""

    api: _Api
    tools: _HostTools
    network: PodNetwork
    images: dict[str, tuple[str, ...]]
    pods_dir: Path
    # every container process alive; the agent SIGKILLs what is left when it stops
    processes: set[asyncio.subprocess.Process] = attrs.field(factory=set)
    # every container output still read; the agent closes what is left when it stops
    outputs: set[_ContainerOutput] = attrs.field(factory=set)


class _PodRunner:
    """Runs one pod on this node, from its first sight to its deletion."""

    def __init__(self, node: _Node, pod: KubeObject) -> None:
        self._node = node
        self.pod = pod  # the latest object seen (informer or our own write)
        metadata = pod["metadata"]
        self.uid: str = metadata["uid"]
        self.namespace: str = metadata["namespace"]
        self.name: str = metadata["name"]
        self._log = log.bind(pod=f"{self.namespace}/{self.name}", uid=self.uid)
        self._dir = node.pods_dir / self.uid
        spec = pod["spec"]
        inits = spec.get("initContainers") or []
        first_wait = "PodInitializing" if inits else "ContainerCreating"
        self._containers = [
            _Container(
                name=c["name"],
                kind="sidecar" if c.get("restartPolicy") == "Always" else "init",
                state=_waiting("PodInitializing"),
            )
            for c in inits
        ] + [
            _Container(name=c["name"], kind="regular", state=_waiting(first_wait))
            for c in spec.get("containers") or []
        ]
        self._sandbox: PodSandbox | None = None
        self._pod_ip = ""  # kept after the sandbox is released: terminal pods report it
        self._start_time = _now()
        self._initialized = False  # every init container succeeded
        self._init_failed = False  # an init container failed and will not be retried
        self._vanished = False  # the object is gone (DELETED)
        self._grace = SHUTDOWN_GRACE  # seconds processes get between SIGTERM and SIGKILL
        self._updated = asyncio.Event()  # replaced on every update: each waiter sees it set
        self._dirty = asyncio.Event()  # the status may differ from the object's

    # -- events from the agent --------------------------------------------------------

    def observe(self, pod: KubeObject) -> None:
        self.pod = pod
        self._signal_update()

    def vanish(self) -> None:
        self._vanished = True
        self._signal_update()

    def _signal_update(self) -> None:
        self._updated.set()
        self._updated = asyncio.Event()

    async def _wait_for_update(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._updated.wait(), within)

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the pod until it is deleted; then stop it, clean up and delete the object."""
        self._log.info("pod_started")
        self._dirty.set()
        status_task = asyncio.create_task(self._status_loop(), name=f"status {self.uid}")
        live_task: asyncio.Task[None] | None = None
        phase = (self.pod.get("status") or {}).get("phase")
        if phase not in _TERMINAL_PHASES and not self._deleting():
            live_task = asyncio.create_task(self._live(), name=f"pod {self.uid}")
        try:
            await self._until_deleted()
            grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
            self._grace = min(float(grace), MAX_TERMINATION_GRACE)
        finally:
            tasks = [task for task in (status_task, live_task) if task is not None]
            for task in tasks:
                task.cancel()  # the live task stops the processes (SIGTERM, grace, SIGKILL)
            await asyncio.wait(tasks)
            await self._release_sandbox()
            await asyncio.to_thread(shutil.rmtree, self._dir / "volumes", True)
        if not self._vanished:
            await self._delete_object()
        self._log.info("pod_removed")

    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def container_output(self, name: str, *, previous: bool) -> _ContainerOutput:
        """The output a kubelet serves as the log of container `name`: its running or
        terminated process, else the one its lastState names (the one lastState names
        for `previous`). Raises _LogUnavailable with kubelet's answer otherwise."""
        container = next((c for c in self._containers if c.name == name), None)
        if container is None:
            raise _LogUnavailable(404, f'container "{name}" not found in pod "{self.name}"')
        last_id = str((container.last_state.get("terminated") or {}).get("containerID") or "")
        state = container.state
        if previous:
            if not last_id:
                raise _LogUnavailable(
                    400, f'previous terminated container "{name}" in pod "{self.name}" not found'
                )
            container_id = last_id
        elif "running" in state:
            container_id = container.container_id
        elif "terminated" in state:
            container_id = str(state["terminated"].get("containerID") or last_id)
            if not container_id:
                raise _LogUnavailable(400, f'container "{name}" in pod "{self.name}" is terminated')
        elif last_id:
            container_id = last_id
        else:
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            raise _LogUnavailable(
                400, f'container "{name}" in pod "{self.name}" is waiting to start: {reason}'
            )
        output = container.outputs.get(container_id)
        if output is None:
            raise _LogUnavailable(
                400, f'the log of container "{name}" ({container_id}) in pod "{self.name}" is gone'
            )
        return output

    async def _until_deleted(self) -> None:
        while True:
            updated = self._updated
            if self._vanished or self._deleting():
                return
            await updated.wait()

    async def _delete_object(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        delay = RESTART_BACKOFF[0]
        while True:
            try:
                await self._node.api.call("DELETE", self._path(), body=body)
                return
            except ApiException as error:
                if error.status in (404, 409):  # gone already, or a new pod of that name
                    return
                self._log.warning("pod_delete_failed", error=str(error))
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                self._log.warning("pod_delete_failed", error=str(error) or type(error).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF[1])

    def _path(self) -> str:
        return POD.object_path(self.name, self.namespace)

    async def _live(self) -> None:
        """Set the pod up and run its containers; start over after an unexpected error."""
        delay = RESTART_BACKOFF[0]
        while True:
            try:
                await self._run_once()
                break
            except Exception as error:
                message = f"setting the pod up failed: {error or type(error).__name__}"
                self._log.warning(
                    "pod_setup_failed",
                    error=message,
                    exc_info=not isinstance(error, PodNetworkError | ApiException),
                )
                await self._release_sandbox()
                self._pod_ip = ""
                self._initialized = False
                for container in self._containers:
                    self._set_state(container, _waiting("ContainerCreating", message))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_BACKOFF[1] * 3)
        # every container has finished for good (restartPolicy Never/OnFailure)
        await self._release_sandbox()
        self._log.info("pod_finished", phase=self._phase())

    async def _run_once(self) -> None:
        if self.pod["spec"].get("hostNetwork"):
            for container in self._containers:
                self._set_state(
                    container,
                    _waiting(
                        "HostNetworkUnsupported", "the local node agent runs no hostNetwork pods"
                    ),
                )
            await asyncio.get_running_loop().create_future()  # until the pod is deleted
        if self._sandbox is None:
            self._sandbox = await self._node.network.create_sandbox()
            self._pod_ip = self._sandbox.address
            self._dirty.set()
            self._log.info("pod_sandbox_created", ip=self._pod_ip, netns=self._sandbox.netns)
        volumes = await self._volumes_when_ready()
        sidecars: list[asyncio.Task[int]] = []
        async with asyncio.TaskGroup() as group:
            for container in self._containers:
                if container.kind == "sidecar":
                    sidecars.append(group.create_task(self._supervise(container, volumes)))
                    await container.first_start.wait()
                elif container.kind == "init" and await self._supervise(container, volumes):
                    self._init_failed = True
                    self._dirty.set()
                    break
            else:
                self._initialized = True
                self._dirty.set()
                async with asyncio.TaskGroup() as regular:
                    for container in self._containers:
                        if container.kind == "regular":
                            regular.create_task(self._supervise(container, volumes))
            for task in sidecars:
                task.cancel()

    async def _release_sandbox(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await self._node.network.destroy_sandbox(sandbox)
            self._log.info("pod_sandbox_destroyed", netns=sandbox.netns)

    # -- containers ---------------------------------------------------------------------

    def _set_state(self, container: _Container, state: dict[str, Any]) -> None:
        container.state = state
        if "running" not in state:
            container.ready = False
        self._dirty.set()

    def _set_ready(self, container: _Container, ready: bool) -> None:
        if container.ready != ready:
            container.ready = ready
            self._dirty.set()

    def _spec_of(self, container: _Container) -> dict[str, Any]:
        spec = self.pod["spec"]
        for candidate in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if candidate["name"] == container.name:
                found: dict[str, Any] = candidate
                return found
        raise _ConfigError("CreateContainerConfigError", f"container {container.name} vanished")

    def _restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy") or "Always")

    async def _supervise(self, container: _Container, volumes: Mapping[str, _Volume]) -> int:
        """Run the container (again and again, as its restart policy says); its last exit code."""
        delay = RESTART_BACKOFF[0]
        while True:
            try:
                launch = await self._launch_for(container, volumes)
            except _ConfigError as error:
                self._set_state(container, _waiting(error.reason, error.message))
                await self._wait_for_update(CONFIG_RETRY)
                continue
            spec = self._spec_of(container)
            process, output = await self._start_process(container, launch)
            started_at, started = _now(), time.monotonic()
            container.image_id = launch.image_id
            container.container_id = f"agc-local://{process.pid}"
            container.keep_output(container.container_id, output)
            self._set_state(container, {"running": {"startedAt": started_at}})
            container.first_start.set()
            self._log.info("container_started", container=container.name, pid=process.pid)
            readiness = asyncio.create_task(self._track_readiness(container, spec, process, launch))
            try:
                returncode = await process.wait()
                finished_at = _now()
            except asyncio.CancelledError:
                await self._stop_process(process)
                raise
            finally:
                readiness.cancel()
                self._node.processes.discard(process)
                await output.finish(LOG_DRAIN_GRACE)  # what its children still write
                self._node.outputs.discard(output)
            terminated: dict[str, Any] = {
                "exitCode": returncode if returncode >= 0 else 128 - returncode,
                "reason": "Completed" if returncode == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": finished_at,
                "containerID": container.container_id,
            }
            if returncode < 0:
                terminated["signal"] = -returncode
            self._log.info("container_exited", container=container.name, exit_code=returncode)
            if not _restarts(self._restart_policy(), container.kind, returncode):
                self._set_state(container, {"terminated": terminated})
                return returncode
            container.last_state = {"terminated": terminated}
            if time.monotonic() - started >= BACKOFF_RESET_AFTER:
                delay = RESTART_BACKOFF[0]
            self._set_state(
                container,
                _waiting(
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={container.name} "
                    f"pod={self.name}_{self.namespace}({self.uid})",
                ),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF[1])
            container.restart_count += 1

    async def _launch_for(self, container: _Container, volumes: Mapping[str, _Volume]) -> _Launch:
        spec = self._spec_of(container)
        image = str(spec.get("image", ""))
        repository = image_repository(image)
        entrypoint = self._node.images.get(repository)
        if entrypoint is None:
            mapped = ", ".join(sorted(self._node.images)) or "none"
            raise _ConfigError(
                "ImageNotMapped",
                f'image "{image}" (repository "{repository}") is not mapped to a program '
                f"on this node; mapped repositories: {mapped}",
            )
        env = await self._container_env(spec)
        command = [expand(arg, env) for arg in spec.get("command") or []]
        argv = command or list(entrypoint)
        executable = _find_executable(argv[0])
        if executable is None:
            raise _ConfigError(
                "CommandNotFound", f'executable "{argv[0]}" was not found on the host PATH'
            )
        args = [expand(arg, env) for arg in spec.get("args") or []]
        return _Launch(
            argv=(executable, *argv[1:], *args),
            env=env,
            mounts=self._mounts(spec, volumes, env),
            working_dir=str(spec.get("workingDir") or "/"),
            image_id=f"agc-local://{repository}",
            executable=_real_path(executable),
        )

    async def _container_env(self, spec: Mapping[str, Any]) -> dict[str, str]:
        env = {
            "PATH": DEFAULT_PATH,
            "HOSTNAME": self._hostname(),
            "HOME": "/root",
        }
        reader = _ObjectReader(self._node.api, self.namespace)
        for source in spec.get("envFrom") or []:
            plural = "secrets" if "secretRef" in source else "configmaps"
            ref = source.get("secretRef") or source.get("configMapRef") or {}
            data = await reader.data(plural, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                kind = _KIND_OF_PLURAL[plural]
                raise _ConfigError(
                    "CreateContainerConfigError", f'{kind} "{ref.get("name", "")}" not found'
                )
            prefix = source.get("prefix", "")
            for key, content in data.items():
                env[prefix + key] = content.decode(errors="replace")
        for var in spec.get("env") or []:
            value_from = var.get("valueFrom")
            if value_from is None:
                env[var["name"]] = expand(var.get("value", ""), env)
                continue
            value = await self._env_value_from(value_from, reader)
            if value is not None:
                env[var["name"]] = value
        return env

    async def _env_value_from(
        self, value_from: Mapping[str, Any], reader: _ObjectReader
    ) -> str | None:
        if "fieldRef" in value_from:
            return _field_value(
                self.pod,
                value_from["fieldRef"]["fieldPath"],
                pod_ip=self._pod_ip,
                host_ip=self._node.network.gateway,
            )
        for ref_name, plural in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
            if ref_name in value_from:
                value = await _key_value(reader, plural, value_from[ref_name])
                return None if value is None else value.decode(errors="replace")
        unsupported = ", ".join(sorted(value_from)) or "nothing"
        raise _ConfigError(
            "CreateContainerConfigError", f"env valueFrom {unsupported} is not supported"
        )

    def _hostname(self) -> str:
        return str(self.pod["spec"].get("hostname") or self.name)[:63]

    def _mounts(
        self, spec: Mapping[str, Any], volumes: Mapping[str, _Volume], env: Mapping[str, str]
    ) -> tuple[_Mount, ...]:
        mounts = []
        for mount in spec.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise _ConfigError(
                    "CreateContainerConfigError", f'volume "{mount["name"]}" is not defined'
                )
            sub_path = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env)
            if sub_path.startswith("/") or ".." in sub_path.split("/"):
                raise _ConfigError("CreateContainerConfigError", f"invalid subPath {sub_path!r}")
            source = volume.path / sub_path if sub_path else volume.path
            if not source.exists():
                source.mkdir(parents=True)  # as a kubelet does for a missing subPath
            mounts.append(
                _Mount(
                    source=source,
                    target=posixpath.normpath(mount["mountPath"]),
                    read_only=volume.read_only or bool(mount.get("readOnly")),
                    is_file=source.is_file(),
                )
            )
        # parents before children, so that a nested mount lands inside its parent's
        return tuple(sorted(mounts, key=lambda m: m.target.count("/")))

    async def _start_process(
        self, container: _Container, launch: _Launch
    ) -> tuple[asyncio.subprocess.Process, _ContainerOutput]:
        tools = self._node.tools
        if self._sandbox is None:
            raise PodNetworkError("the pod has no sandbox")
        script = _wrapper_script(
            tools,
            hostname=self._hostname(),
            mounts=launch.mounts,
            working_dir=launch.working_dir,
            volumes_root=self._dir,
            executable=launch.executable,
        )
        argv = [
            # SIGKILL the container if the agent dies without cleaning up
            *(tools.setpriv, "--pdeathsig", "KILL", "--"),
            *(tools.ip, "netns", "exec", self._sandbox.netns),
            *(tools.unshare, "--uts", "--"),
            *(tools.sh, "-c", script, "agc-container"),
            *launch.argv,
        ]
        path = self._dir / "logs" / container.name / f"{container.processes_started}.log"
        container.processes_started += 1
        output = _ContainerOutput(path)
        self._node.outputs.add(output)
        # the read ends go to `output`; the process holds the only write ends
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout_write,
                stderr=stderr_write,
                env=launch.env,
                cwd="/",
                start_new_session=True,
            )
        except BaseException:
            os.close(stdout_read)
            os.close(stderr_read)
            output.close()
            self._node.outputs.discard(output)
            raise
        finally:
            os.close(stdout_write)
            os.close(stderr_write)
        self._node.processes.add(process)
        pipes = {"stdout": stdout_read, "stderr": stderr_read}
        try:
            for stream in list(pipes):
                await output.attach(stream, pipes.pop(stream))
        except BaseException:
            for fd in pipes.values():
                os.close(fd)
            _signal_group(process, signal.SIGKILL)
            self._node.processes.discard(process)
            output.close()
            self._node.outputs.discard(output)
            raise
        return process, output

    async def _stop_process(self, process: asyncio.subprocess.Process) -> None:
        _signal_group(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._grace)
        except TimeoutError:
            _signal_group(process, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 5.0)
        self._node.processes.discard(process)

    # -- volumes ------------------------------------------------------------------------

    async def _volumes_when_ready(self) -> dict[str, _Volume]:
        while True:
            try:
                return await self._prepare_volumes()
            except _ConfigError as error:
                for container in self._containers:
                    if "waiting" in container.state:
                        self._set_state(container, _waiting(error.reason, error.message))
                await self._wait_for_update(CONFIG_RETRY)

    async def _prepare_volumes(self) -> dict[str, _Volume]:
        reader = _ObjectReader(self._node.api, self.namespace)
        volumes: dict[str, _Volume] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            name = volume["name"]
            try:
                volumes[name] = await self._prepare_volume(volume, reader)
            except _ConfigError as error:
                raise _ConfigError(
                    "ContainerCreating", f'MountVolume.SetUp failed for volume "{name}": {error}'
                ) from error
        return volumes

    async def _prepare_volume(self, volume: Mapping[str, Any], reader: _ObjectReader) -> _Volume:
        directory = self._dir / "volumes" / volume["name"]
        if "hostPath" in volume:
            return await asyncio.to_thread(_host_path_volume, volume["hostPath"])
        if "emptyDir" in volume:
            await asyncio.to_thread(_write_volume, directory, [])
            return _Volume(path=directory, read_only=False)
        files: list[_File] = []
        if "secret" in volume:
            source = volume["secret"]
            files = await self._key_files(
                reader, "secrets", source.get("secretName", ""), source, source.get("defaultMode")
            )
        elif "configMap" in volume:
            source = volume["configMap"]
            files = await self._key_files(
                reader, "configmaps", source.get("name", ""), source, source.get("defaultMode")
            )
        elif "downwardAPI" in volume:
            source = volume["downwardAPI"]
            files = self._downward_files(source.get("items") or [], source.get("defaultMode"))
        elif "projected" in volume:
            files = await self._projected_files(volume["projected"], reader)
        else:
            kinds = ", ".join(sorted(set(volume) - {"name"})) or "no source"
            raise _ConfigError("ContainerCreating", f"volume type {kinds} is not supported")
        await asyncio.to_thread(_write_volume, directory, files)
        return _Volume(path=directory, read_only=True)

    async def _key_files(
        self,
        reader: _ObjectReader,
        plural: str,
        name: str,
        source: Mapping[str, Any],
        default_mode: int | None,
    ) -> list[_File]:
        mode = 0o644 if default_mode is None else default_mode
        data = await reader.data(plural, name)
        kind = _KIND_OF_PLURAL[plural]
        optional = bool(source.get("optional"))
        if data is None:
            if optional:
                return []
            raise _ConfigError("ContainerCreating", f'{kind} "{name}" not found')
        items = source.get("items")
        if not items:
            return [_File(path=key, content=value, mode=mode) for key, value in data.items()]
        files = []
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise _ConfigError("ContainerCreating", f'key {item["key"]} not in {kind} "{name}"')
            files.append(
                _File(path=item["path"], content=data[item["key"]], mode=item.get("mode", mode))
            )
        return files

    def _downward_files(
        self, items: Sequence[Mapping[str, Any]], default_mode: int | None
    ) -> list[_File]:
        mode = 0o644 if default_mode is None else default_mode
        files = []
        for item in items:
            if "fieldRef" not in item:
                raise _ConfigError(
                    "ContainerCreating", f"downwardAPI item {item.get('path')}: only fieldRef works"
                )
            value = _field_value(
                self.pod,
                item["fieldRef"]["fieldPath"],
                pod_ip=self._pod_ip,
                host_ip=self._node.network.gateway,
            )
            files.append(
                _File(path=item["path"], content=value.encode(), mode=item.get("mode", mode))
            )
        return files

    async def _projected_files(
        self, projected: Mapping[str, Any], reader: _ObjectReader
    ) -> list[_File]:
        mode = projected.get("defaultMode")
        files: list[_File] = []
        for source in projected.get("sources") or []:
            if "secret" in source:
                ref = source["secret"]
                files += await self._key_files(reader, "secrets", ref.get("name", ""), ref, mode)
            elif "configMap" in source:
                ref = source["configMap"]
                files += await self._key_files(reader, "configmaps", ref.get("name", ""), ref, mode)
            elif "downwardAPI" in source:
                files += self._downward_files(source["downwardAPI"].get("items") or [], mode)
            elif "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                files.append(
                    _File(
                        path=token["path"],
                        content=(await self._service_account_token(token)).encode(),
                        mode=0o600 if mode is None else mode,
                    )
                )
            else:
                kinds = ", ".join(sorted(source)) or "no source"
                raise _ConfigError(
                    "ContainerCreating", f"projected source {kinds} is not supported"
                )
        return files

    async def _service_account_token(self, source: Mapping[str, Any]) -> str:
        account = self.pod["spec"].get("serviceAccountName") or "default"
        audience = source.get("audience")
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": int(source.get("expirationSeconds") or 3600),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.name,
                    "uid": self.uid,
                },
            },
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        try:
            response = await self._node.api.call("POST", path, body=request)
        except ApiException as error:
            raise _ConfigError(
                "ContainerCreating", f"token for service account {account}: {error.reason}"
            ) from error
        return str(response["status"]["token"])

    # -- readiness ----------------------------------------------------------------------

    async def _track_readiness(
        self,
        container: _Container,
        spec: Mapping[str, Any],
        process: asyncio.subprocess.Process,
        launch: _Launch,
    ) -> None:
        probe = spec.get("readinessProbe")
        if probe is None:
            await self._wait_until_serving(spec, process)
            self._set_ready(container, True)
            return
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        period = max(1.0, float(probe.get("periodSeconds", 10)))
        success_threshold = int(probe.get("successThreshold", 1))
        failure_threshold = int(probe.get("failureThreshold", 3))
        successes = failures = 0
        while True:
            if await self._probe(probe, spec, process, launch):
                successes, failures = successes + 1, 0
                if successes >= success_threshold:
                    self._set_ready(container, True)
            else:
                successes, failures = 0, failures + 1
                if failures >= failure_threshold:
                    self._set_ready(container, False)
            await asyncio.sleep(period)

    async def _wait_until_serving(
        self, spec: Mapping[str, Any], process: asyncio.subprocess.Process
    ) -> None:
        """Ready without a probe: declared TCP ports accept at the pod IP. With none
        declared: anything listens in the pod's namespace, or the process is no
        server: it ran NON_LISTENER_READY_AFTER and has been idle for IDLE_FOR (a
        server still starting up burns CPU; `sleep` does not)."""
        ports = [
            int(port["containerPort"])
            for port in spec.get("ports") or []
            if port.get("protocol", "TCP") == "TCP"
        ]
        started = busy_at = time.monotonic()
        ticks = -1
        netns = self._sandbox.netns if self._sandbox else ""
        while True:
            if ports:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        if all([await _accepts(self._pod_ip, port) for port in ports]):
                            return
            else:
                if _netns_has_listener(process.pid, netns):
                    return
                now, previous, ticks = time.monotonic(), ticks, _cpu_ticks(process.pid)
                if ticks != previous:
                    busy_at = now
                elif now - started >= NON_LISTENER_READY_AFTER and now - busy_at >= IDLE_FOR:
                    return
            await asyncio.sleep(SERVING_POLL)

    async def _probe(
        self,
        probe: Mapping[str, Any],
        spec: Mapping[str, Any],
        process: asyncio.subprocess.Process,
        launch: _Launch,
    ) -> bool:
        timeout = max(1.0, float(probe.get("timeoutSeconds", 1)))
        try:
            async with asyncio.timeout(timeout):
                if "exec" in probe:
                    return await self._exec_probe(
                        probe["exec"].get("command") or [], process, launch
                    )
                if "httpGet" in probe:
                    return await self._http_probe(probe["httpGet"], spec)
                for kind in ("tcpSocket", "grpc"):
                    if kind in probe:
                        return await _accepts(
                            self._pod_ip, _probe_port(probe[kind].get("port"), spec)
                        )
        except (OSError, TimeoutError, aiohttp.ClientError, _ConfigError):
            return False
        return False

    async def _exec_probe(
        self, command: Sequence[str], process: asyncio.subprocess.Process, launch: _Launch
    ) -> bool:
        if not command:
            return False
        # the container's namespaces: its mounts, its network, its hostname
        probe = await asyncio.create_subprocess_exec(
            *(self._node.tools.nsenter, "--target", str(process.pid)),
            *("--mount", "--net", "--uts", "--"),
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=launch.env,
            cwd="/",
        )
        try:
            return await probe.wait() == 0
        finally:
            if probe.returncode is None:
                probe.kill()
                await probe.wait()

    async def _http_probe(self, http_get: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
        scheme = str(http_get.get("scheme", "HTTP")).lower()
        port = _probe_port(http_get.get("port"), spec)
        path = str(http_get.get("path") or "/")
        if not path.startswith("/"):
            path = "/" + path
        headers = {"User-Agent": "kube-probe/agc-local"}
        headers.update({h["name"]: h["value"] for h in http_get.get("httpHeaders") or []})
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{scheme}://{self._pod_ip}:{port}{path}",
                headers=headers,
                ssl=False,
                allow_redirects=False,
            ) as response,
        ):
            return 200 <= response.status < 400

    # -- status -------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(STATUS_COALESCE)
            self._dirty.clear()
            try:
                await self._write_status()
            except Exception as error:
                self._log.warning(
                    "pod_status_write_failed",
                    error=str(error) or type(error).__name__,
                    exc_info=not isinstance(error, _API_ERRORS),
                )
                self._dirty.set()
                await asyncio.sleep(1.0)

    async def _write_status(self) -> None:
        pod = self.pod
        for _ in range(5):
            current = pod.get("status") or {}
            desired = self._desired_status(current)
            if desired == current:
                return
            # A merge patch of the whole status (lists are replaced, `desired` keeps every
            # key of `current`) guarded by the resourceVersion, so a concurrent change
            # is a 409. Not a PUT: pods/status would take our metadata, labels included.
            body = {
                "metadata": {"resourceVersion": pod["metadata"].get("resourceVersion")},
                "status": desired,
            }
            try:
                self.pod = await self._node.api.call(
                    "PATCH",
                    f"{self._path()}/status",
                    body=body,
                    content_type="application/merge-patch+json",
                )
                return
            except ApiException as error:
                if error.status == 404:
                    return
                if error.status != 409:
                    raise
            pod = self.pod = await self._node.api.call("GET", self._path())
        raise RuntimeError("the pod kept changing under five status writes in a row")

    def _desired_status(self, current: Mapping[str, Any]) -> dict[str, Any]:
        now = _now()
        gateway = self._node.network.gateway
        status = dict(current)
        phase = self._phase()
        status["phase"] = phase
        status["hostIP"] = gateway
        status["hostIPs"] = [{"ip": gateway}]
        if self._pod_ip:
            status["podIP"] = self._pod_ip
            status["podIPs"] = [{"ip": self._pod_ip}]
        status["startTime"] = current.get("startTime") or self._start_time
        status["conditions"] = _merge_conditions(
            current.get("conditions") or [], self._conditions(phase, current), now
        )
        spec = self.pod["spec"]
        images = {
            c["name"]: str(c.get("image", ""))
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
        }
        inits = [c.status(images.get(c.name, "")) for c in self._containers if c.kind != "regular"]
        if inits:
            status["initContainerStatuses"] = inits
        status["containerStatuses"] = [
            c.status(images.get(c.name, "")) for c in self._containers if c.kind == "regular"
        ]
        return status

    def _phase(self) -> str:
        """kubelet's rules: Pending until every container ran, terminal once none will again."""
        if self._init_failed:
            return "Failed"
        if not self._initialized:
            return "Pending"
        regular = [c for c in self._containers if c.kind == "regular"]
        waiting = running = stopped = succeeded = 0
        for container in regular:
            if "running" in container.state:
                running += 1
            elif "terminated" in container.state:
                stopped += 1
                succeeded += container.state["terminated"]["exitCode"] == 0
            elif container.last_state:
                stopped += 1  # waiting to be restarted
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        policy = self._restart_policy()
        if policy == "Always" or not stopped:
            return "Running"
        if succeeded == len(regular):
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"

    def _conditions(self, phase: str, current: Mapping[str, Any]) -> list[dict[str, str]]:
        terminal = phase in _TERMINAL_PHASES
        if self._initialized:
            initialized = {"type": "Initialized", "status": "True"}
        else:
            pending = [c.name for c in self._containers if c.kind != "regular"]
            initialized = {
                "type": "Initialized",
                "status": "False",
                "reason": "ContainersNotInitialized",
                "message": f"containers with incomplete status: [{' '.join(pending)}]",
            }
        unready = [c.name for c in self._containers if c.kind == "regular" and not c.ready]
        if not unready and not terminal:
            containers_ready = {"type": "ContainersReady", "status": "True"}
        else:
            containers_ready = {
                "type": "ContainersReady",
                "status": "False",
                "reason": "PodCompleted" if terminal else "ContainersNotReady",
                "message": ""
                if terminal
                else f"containers with unready status: [{' '.join(unready)}]",
            }
        ready = {**containers_ready, "type": "Ready"}
        if containers_ready["status"] == "True":
            existing = {c["type"]: c.get("status") for c in current.get("conditions") or []}
            gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []]
            missing = [g for g in gates if existing.get(g) != "True"]
            if missing:
                ready = {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ReadinessGatesNotReady",
                    "message": f"corresponding condition of pod readiness gate {missing[0]!r} "
                    "does not exist or is not True",
                }
        return [initialized, ready, containers_ready]


def _probe_port(port: Any, spec: Mapping[str, Any]) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for declared in spec.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise _ConfigError("Unhealthy", f"probe port {port!r} is not a declared port")


def _host_path_volume(source: Mapping[str, Any]) -> _Volume:
    path = Path(source["path"])
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind and not path.exists():
        raise _ConfigError("ContainerCreating", f"hostPath {path} does not exist")
    return _Volume(path=path, read_only=False)


def _merge_conditions(
    current: Sequence[Mapping[str, Any]], ours: Sequence[Mapping[str, str]], now: str
) -> list[dict[str, Any]]:
    """`current` with our conditions replaced in place (new ones appended), keeping
    lastTransitionTime where the status did not change; others' conditions untouched."""
    pending = {condition["type"]: condition for condition in ours}
    merged: list[dict[str, Any]] = []
    for existing in current:
        mine = pending.pop(existing["type"], None)
        merged.append(dict(existing) if mine is None else _condition(mine, existing, now))
    merged.extend(_condition(mine, None, now) for mine in pending.values())
    return merged


def _condition(
    mine: Mapping[str, str], existing: Mapping[str, Any] | None, now: str
) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": mine["type"], "status": mine["status"]}
    if existing is None or "lastProbeTime" in existing:
        condition["lastProbeTime"] = None
    same = existing is not None and existing.get("status") == mine["status"]
    transition = existing.get("lastTransitionTime") if existing is not None and same else None
    condition["lastTransitionTime"] = transition or now
    for key in ("reason", "message"):
        if mine.get(key):
            condition[key] = mine[key]
    return condition


class _Handler:
    """Informer handler: forwards changes to the agent (no I/O, as handlers must)."""

    def __init__(
        self, changed: Callable[[KubeObject], None], deleted: Callable[[KubeObject], None]
    ) -> None:
        self._changed = changed
        self._deleted = deleted

    def on_add(self, obj: KubeObject) -> None:
        self._changed(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self._changed(new)

    def on_delete(self, obj: KubeObject) -> None:
        self._deleted(obj)


def _memory_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _read_first_line(path: str, default: str) -> str:
    try:
        return Path(path).read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        return default


def _os_image() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "Linux"
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


class _NodeRegistration:
    """The Node object, its status heartbeat and its Lease."""

    def __init__(
        self, api: _Api, *, node_name: str, address: str, pod_cidr: str, kubelet_port: int
    ) -> None:
        self._api = api
        self._name = node_name
        self._address = address
        self._kubelet_port = kubelet_port
        self._pod_cidr = pod_cidr
        self._uid = ""
        self._kubelet_version = "v0.0.0"
        # condition type -> (status, lastTransitionTime) as the node last showed them
        self._conditions: dict[str, tuple[str, str]] = {}
        arch = platform.machine()
        self.labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _ARCHITECTURES.get(arch, arch),
        }

    async def register(self) -> None:
        version = await self._api.call("GET", "/version")
        self._kubelet_version = str(version.get("gitVersion") or self._kubelet_version)
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self._name, "labels": self.labels},
            "spec": {"podCIDR": self._pod_cidr, "podCIDRs": [self._pod_cidr]},
        }
        try:
            node = await self._api.call("POST", "/api/v1/nodes", body=body)
        except ApiException as error:
            if error.status != 409:
                raise
            node = await self._api.call(
                "PATCH",
                f"/api/v1/nodes/{self._name}",
                body={"metadata": {"labels": self.labels}},
                content_type="application/merge-patch+json",
            )
            if node.get("spec", {}).get("podCIDR") not in (None, self._pod_cidr):
                log.warning(
                    "node_pod_cidr_differs",
                    node=self._name,
                    pod_cidr=node["spec"]["podCIDR"],
                    pod_subnet=self._pod_cidr,
                )
        self._uid = node["metadata"]["uid"]
        self._remember_conditions(node)
        await self._beat()
        log.info("node_registered", node=self._name, address=self._address)

    async def heartbeat(self) -> None:
        """Post NodeReady and renew the Lease; register again if the Node was deleted."""
        try:
            await self._beat()
        except ApiException as error:
            if error.status != 404:
                raise
            log.warning("node_vanished", node=self._name)
            await self.register()

    async def _beat(self) -> None:
        now = _now()
        node = await self._api.call(
            "PATCH",
            f"/api/v1/nodes/{self._name}/status",
            body={"status": self._status(now)},
            content_type="application/merge-patch+json",
        )
        self._remember_conditions(node)
        await self._renew_lease()

    def _remember_conditions(self, node: KubeObject) -> None:
        for condition in (node.get("status") or {}).get("conditions") or []:
            self._conditions[condition["type"]] = (
                condition.get("status", ""),
                condition.get("lastTransitionTime", ""),
            )

    def _status(self, now: str) -> dict[str, Any]:
        conditions = []
        for type_, status, reason, message in (
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "memory is sufficient"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "PIDs are sufficient"),
            ("Ready", "True", "KubeletReady", "the local node agent is posting ready status"),
        ):
            previous_status, previous_time = self._conditions.get(type_, ("", ""))
            conditions.append(
                {
                    "type": type_,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": previous_time if previous_status == status else now,
                }
            )
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_memory_kib()}Ki",
            "pods": "110",
        }
        machine_id = _read_first_line("/etc/machine-id", self._name)
        return {
            "conditions": conditions,
            # no Hostname: the apiserver would try it first to reach the kubelet (module doc)
            "addresses": [{"type": "InternalIP", "address": self._address}],
            "capacity": capacity,
            "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self._kubelet_port}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": machine_id,
                "bootID": _read_first_line("/proc/sys/kernel/random/boot_id", ""),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": "agc-local://1",
                "kubeletVersion": self._kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.labels["kubernetes.io/arch"],
            },
        }

    async def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self._name}"
        spec = {
            "holderIdentity": self._name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": _now_micro(),
        }
        try:
            await self._api.call(
                "PATCH", path, body={"spec": spec}, content_type="application/merge-patch+json"
            )
        except ApiException as error:
            if error.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self._name, "uid": self._uid}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self._name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [owner],
                },
                "spec": spec,
            }
            await self._api.call("POST", path.rsplit("/", 1)[0], body=lease)


def _wants_this_node(pod: KubeObject, labels: Mapping[str, str]) -> bool:
    """May the default scheduler place `pod` on a node with `labels`?"""
    spec = pod.get("spec") or {}
    if spec.get("nodeName") or pod["metadata"].get("deletionTimestamp"):
        return False
    if (spec.get("schedulerName") or "") not in DEFAULT_SCHEDULERS:
        return False
    if spec.get("schedulingGates"):
        return False
    selector = spec.get("nodeSelector") or {}
    return all(labels.get(key) == value for key, value in selector.items())


# -- kubelet API ----------------------------------------------------------------------------


_FindOutput = Callable[[str, str, str, bool], _ContainerOutput]


class _KubeletServer:
    """The kubelet's HTTPS API, as much as the apiserver's pods/log needs (module doc).

    `find_output(namespace, pod, container, previous)` names the output to serve
    or raises _LogUnavailable. Listens on `address` only, answers only peers at
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
        except _LogUnavailable as error:
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


class NodeAgent:
    """Kubelet and scheduler for one node whose pods are local processes (see module doc)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        images: Mapping[str, Sequence[str]],
        state_dir: Path,
        node_name: str = "agc-local",
        pod_subnet: str = "10.214.0.0/16",
    ) -> None:
        for repository, argv in images.items():
            if not argv:
                raise ValueError(f"image {repository!r} is mapped to an empty argv")
        self._api = _Api(api)
        self._raw_api = api
        self._images = {repository: tuple(argv) for repository, argv in images.items()}
        self._state_dir = state_dir
        self._node_name = node_name
        self._pod_subnet = pod_subnet
        # pod uid -> its runner, while it runs (created by informer events)
        self._runners: dict[str, _PodRunner] = {}
        # uids whose runner finished (pod deleted by us); ignored until their DELETED event
        self._finished: set[str] = set()
        self._tasks: asyncio.TaskGroup | None = None  # set while run() runs
        self._node: _Node | None = None
        self._to_bind: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()  # keys in _to_bind (no duplicates)
        self._labels: dict[str, str] = {}

    async def run(self) -> None:
        """Register the Node and run pods until cancelled; then stop and clean up everything."""
        if self._tasks is not None:
            raise RuntimeError("the node agent is already running")
        tools = _HostTools.find()
        network = PodNetwork(
            subnet=self._pod_subnet, node_name=self._node_name, state_dir=self._state_dir
        )
        pods_dir = self._state_dir / "pods"
        pods_dir.mkdir(parents=True, exist_ok=True)
        pods_dir.chmod(0o700)  # volumes hold Secret data
        node = self._node = _Node(
            api=self._api,
            tools=tools,
            network=network,
            images=self._images,
            pods_dir=pods_dir,
        )
        kubelet = _KubeletServer(
            address=network.gateway,
            node_name=self._node_name,
            directory=self._state_dir / "kubelet",
            find_output=self._container_output,
        )
        try:
            await network.open()
            registration = _NodeRegistration(
                self._api,
                node_name=self._node_name,
                address=network.gateway,
                pod_cidr=str(network.subnet),
                kubelet_port=await kubelet.start(),
            )
            self._labels = registration.labels
            registered = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._keep_node_alive(registration, registered), name="node")
                await registered.wait()
                assigned = Informer(
                    POD,
                    ApiListWatcher(
                        self._raw_api, POD, field_selector=f"spec.nodeName={self._node_name}"
                    ),
                    clock=SystemClock(),
                    transform=drop_managed_fields,
                    name="pods-on-node",
                )
                assigned.add_handler(_Handler(self._on_assigned_pod, self._on_assigned_pod_gone))
                unscheduled = Informer(
                    POD,
                    ApiListWatcher(
                        self._raw_api,
                        POD,
                        field_selector="spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed",
                    ),
                    clock=SystemClock(),
                    transform=drop_managed_fields,
                    name="pods-unscheduled",
                )
                unscheduled.add_handler(_Handler(self._on_unscheduled_pod, lambda _: None))
                tasks.create_task(assigned.run(), name="informer pods-on-node")
                tasks.create_task(unscheduled.run(), name="informer pods-unscheduled")
                tasks.create_task(self._schedule(unscheduled), name="scheduler")
                log.info("node_agent_running", node=self._node_name, subnet=str(network.subnet))
        finally:
            self._tasks = None
            kubelet.close()
            try:
                await kubelet.stop()  # the pods are stopped: followed logs have ended
            finally:
                # what graceful stops missed (or a second cancellation interrupted)
                for process in list(node.processes):
                    _signal_group(process, signal.SIGKILL)
                node.processes.clear()
                for output in list(node.outputs):
                    output.close()
                node.outputs.clear()
                network.destroy()
                self._runners.clear()
                log.info("node_agent_stopped", node=self._node_name)

    def _container_output(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> _ContainerOutput:
        """For the kubelet API: the output to serve as `container`'s log (see _PodRunner)."""
        runners = [r for r in self._runners.values() if (r.namespace, r.name) == (namespace, pod)]
        if not runners:
            raise _LogUnavailable(404, f'pod "{pod}" does not exist')
        # a pod being deleted and its successor of the same name: the successor
        live = [r for r in runners if not r.pod["metadata"].get("deletionTimestamp")]
        return (live or runners)[-1].container_output(container, previous=previous)

    async def _keep_node_alive(
        self, registration: _NodeRegistration, registered: asyncio.Event
    ) -> None:
        while True:
            try:
                if registered.is_set():
                    await registration.heartbeat()
                else:
                    await registration.register()
                    registered.set()
            except Exception as error:
                log.warning(
                    "node_heartbeat_failed",
                    node=self._node_name,
                    error=str(error) or type(error).__name__,
                    exc_info=not isinstance(error, _API_ERRORS),
                )
            await asyncio.sleep(HEARTBEAT_PERIOD if registered.is_set() else 1.0)

    # -- pods on this node --------------------------------------------------------------

    def _on_assigned_pod(self, pod: KubeObject) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._finished:
            return
        runner = self._runners.get(uid)
        if runner is not None:
            runner.observe(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in _TERMINAL_PHASES and not pod["metadata"].get("deletionTimestamp"):
            return  # ran before this agent started; nothing left to do but keep its status
        if self._tasks is None or self._node is None:
            return
        runner = _PodRunner(self._node, pod)
        self._runners[uid] = runner
        self._tasks.create_task(self._run_pod(runner), name=f"pod {_object_key(pod)}")

    def _on_assigned_pod_gone(self, pod: KubeObject) -> None:
        uid = pod["metadata"]["uid"]
        self._finished.discard(uid)
        runner = self._runners.get(uid)
        if runner is not None:
            runner.vanish()

    async def _run_pod(self, runner: _PodRunner) -> None:
        try:
            await runner.run()
        except Exception:
            # a later event for the pod starts a fresh runner
            log.exception("pod_runner_failed", pod=f"{runner.namespace}/{runner.name}")
            self._runners.pop(runner.uid, None)
            return
        self._runners.pop(runner.uid, None)
        self._finished.add(runner.uid)

    # -- scheduling ---------------------------------------------------------------------

    def _on_unscheduled_pod(self, pod: KubeObject) -> None:
        if _wants_this_node(pod, self._labels):
            self._enqueue_binding(_object_key(pod))

    def _enqueue_binding(self, key: str) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._to_bind.put_nowait(key)

    async def _schedule(self, unscheduled: Informer) -> None:
        while True:
            key = await self._to_bind.get()
            self._queued.discard(key)
            pod = unscheduled.store.get(key)
            if pod is None or not _wants_this_node(pod, self._labels):
                continue
            try:
                await self._bind(pod)
            except ApiException as error:
                if error.status in (404, 409):  # gone, or bound meanwhile
                    continue
                log.warning("pod_binding_failed", pod=key, error=str(error))
                asyncio.get_running_loop().call_later(1.0, self._enqueue_binding, key)
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                log.warning("pod_binding_failed", pod=key, error=str(error) or type(error).__name__)
                asyncio.get_running_loop().call_later(1.0, self._enqueue_binding, key)

    async def _bind(self, pod: KubeObject) -> None:
        metadata = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            # the uid makes the binding a no-op for a re-created pod of the same name
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "target": {"apiVersion": "v1", "kind": "Node", "name": self._node_name},
        }
        path = POD.object_path(metadata["name"], metadata["namespace"]) + "/binding"
        await self._api.call("POST", path, body=binding)
        log.info("pod_bound", pod=_object_key(pod), node=self._node_name)


# -- command line -------------------------------------------------------------------------


def _parse_image(value: str) -> tuple[str, list[str]]:
    repository, sep, argv = value.partition("=")
    if not sep or not repository or not argv:
        raise argparse.ArgumentTypeError(f"--image wants REPO=ARGV0[,ARG...], got {value!r}")
    return repository, argv.split(",")


async def _run_cli(args: argparse.Namespace) -> None:
    api = await api_client_from_kubeconfig(args.kubeconfig)
    async with api:
        agent = NodeAgent(
            api,
            images=dict(args.image),
            state_dir=args.state_dir,
            node_name=args.node_name,
            pod_subnet=args.pod_subnet,
        )
        task = asyncio.create_task(agent.run(), name="node-agent")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agc_controller.localcluster.nodeagent",
        description="Run pods bound to one node as local processes (kubelet + scheduler).",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--node-name", default="agc-local")
    parser.add_argument("--pod-subnet", default="10.214.0.0/16")
    parser.add_argument(
        "--image",
        type=_parse_image,
        action="append",
        default=[],
        metavar="REPO=ARGV0[,ARG...]",
        help="run containers of image repository REPO as this program (repeatable)",
    )
    args = parser.parse_args(argv)
    logs.configure()
    try:
        asyncio.run(_run_cli(args))
    except (PodNetworkError, ValueError, RuntimeError) as error:
        print(f"node agent: {error}", file=sys.stderr)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
