"""One Gateway's NGINX: files, validation, start, reload, state pushes, supervision.

Invariants:
- `nginx.conf` only ever holds a configuration that passed `nginx -t` (staged
  as `nginx.conf.new`, validated, renamed); a failing one never replaces it.
- NGINX is reloaded only when the static text changes; routes, endpoints and
  certificates arrive through the control socket (`push`) with no reload.
- If NGINX dies, the supervisor starts it again with the last good static
  config and pushes the last good state (shared dicts do not survive a crash).
- A listening address:port that another socket holds is `PortInUse`, not an
  `NginxError`: `nginx -t` does not see it, and the same configuration starts
  once the port is free. What a start or reload reports comes from what NGINX
  logged during that attempt only, never from an older line of its error log.
- NGINX outlives the controller (its own session, no death signal): a controller
  that crashed or lost leadership leaves traffic flowing. The next controller on
  the same state directory adopts a running master instead of replacing it, so
  a control-plane failover never closes a client connection; it then pushes
  its state, and reloads only if the static text differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import pwd
import re
import shutil
import signal
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import structlog

from agc_controller.core.errors import PermanentError, TemporaryError
from agc_controller.providers.local.static import InstanceLayout
from agc_controller.providers.local.streams import StreamFiles
from agc_controller.selfsigned import self_signed
from agc_controller.translate.model import WafRuleSet

log = structlog.get_logger(__name__)

NGINX = os.environ.get("AGC_NGINX", "/usr/sbin/nginx")
_READY_WITHIN = 10.0
_RESTART_DELAY = 1.0
# Draining keep-alive connections around a reload (see `_reload`): seconds of drain
# mode before the reload, so that every client busy on a keep-alive connection has
# sent one more request and been told to close; seconds after the new workers
# answer, while the old ones take in that they are to exit; and the expiry drain
# mode is set with, in case nobody comes back to end it.
_DRAIN_BEFORE = 0.25
_DRAIN_AFTER = 0.2
_DRAIN_EXPIRY = 10
# what NGINX logs for each try to bind a listening socket that another one holds...
_BIND_IN_USE = re.compile(
    rf"bind\(\) to (?P<address>\S+):(?P<port>\d+) failed \({errno.EADDRINUSE}: "
)
# ...and once it gives up (it tries five times, half a second apart)
_GAVE_UP_BINDING = "still could not bind()"
_BIND_DENIED = re.compile(rf"bind\(\) to \S+:\d+ failed \({errno.EACCES}: ")


class NginxError(PermanentError):
    """NGINX refused a configuration or a state update; the message says why.

    Permanent for that input: NGINX keeps serving the last good state, and the
    Gateway reports the refusal until its input changes.
    """


class PortInUse(TemporaryError):
    """NGINX could not listen on `address:port`: another socket holds it.

    Temporary: the configuration is fine, and the same one starts once the port
    is free. NGINX keeps serving its previous configuration meanwhile, if any.
    """

    def __init__(self, address: str, port: int) -> None:
        super().__init__(f"{address}:{port} is in use by another socket")
        self.address = address
        self.port = port


def port_in_use(logged: str) -> PortInUse | None:
    """PortInUse if `logged` (what NGINX wrote to stderr or its error log during one
    start or reload) shows that it gave up binding an address:port held elsewhere;
    the first such address:port if several were."""
    if _GAVE_UP_BINDING not in logged:
        return None
    match = _BIND_IN_USE.search(logged)
    if match is None:
        return None
    return PortInUse(match["address"], int(match["port"]))


def bind_hint(logged: str) -> str:
    """What to do when `logged` shows NGINX may not bind a port (below 1024, not
    root); "" otherwise."""
    if _BIND_DENIED.search(logged) is None:
        return ""
    return (
        " Ports below 1024 need root: run as root, or shift every listener port with "
        "--local-port-offset (env AGC_LOCAL_PORT_OFFSET), e.g. 8000."
    )


def _write_fallback_certificate(cert_path: Path, key_path: Path) -> None:
    """A placeholder NGINX needs on TLS listeners before Lua picks the real certificate."""
    cert_pem, key_pem = self_signed("agc-controller-fallback", days=3650)
    cert_path.write_text(cert_pem)
    key_path.touch(mode=0o600)
    key_path.write_text(key_pem)


@attrs.define
class NginxInstance:
    layout: InstanceLayout
    name: str
    # called after every reload (metrics)
    on_reload: Callable[[], None] = attrs.field(default=lambda: None)
    # the static config that NGINX runs with now (last good)
    static_text: str | None = None
    # the router state NGINX holds, part name -> its JSON (last good); None: unknown
    # (not started, adopted, restarted, or an update's outcome is unknown), so the
    # next push replaces every part
    parts: dict[str, bytes] | None = None
    # the static id the parts were pushed for
    parts_static: str | None = None
    # the gateway's mesh workload certificate (chain PEM, key PEM), sent again to a
    # master that starts afresh (its shared memory starts empty); None: none yet
    mesh_certificate: tuple[str, str] | None = attrs.field(default=None, repr=False)
    # the firewall rule sets of the running static config (kept while unused: see
    # program's `_keeping_loaded`)
    waf_rule_sets: tuple[WafRuleSet, ...] = ()
    # the streams' files (streams.py), which the stream servers read
    streams: StreamFiles = attrs.field(
        default=attrs.Factory(lambda self: StreamFiles(self.layout.streams_dir), takes_self=True)
    )
    reloads: int = 0
    # the master we started (None when adopted or not started)
    _process: asyncio.subprocess.Process | None = None
    # the master's pid, whether we started it or adopted it
    _pid: int | None = None
    _supervisor: asyncio.Task[None] | None = None
    _stopping: bool = False

    def prepare(self) -> None:
        for sub in ("tmp", "tls", "waf"):
            (self.layout.prefix / sub).mkdir(parents=True, exist_ok=True)
        self._make_audit_log()
        cert, key = self.layout.fallback_cert
        if not cert.exists():
            _write_fallback_certificate(cert, key)
        self._adopt()

    def _make_audit_log(self) -> None:
        """The firewall's audit log, which the workers open and append to: theirs
        (user nobody) when the master runs as root."""
        audit_log = self.layout.waf_audit_log
        audit_log.touch(mode=0o640, exist_ok=True)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(audit_log, nobody.pw_uid, nobody.pw_gid)

    def _adopt(self) -> None:
        """Take over a master a previous controller left running on this prefix."""
        try:
            pid = int((self.layout.prefix / "nginx.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"nginx" not in cmdline or str(self.layout.prefix).encode() not in cmdline:
            return
        self._pid = pid
        with contextlib.suppress(OSError):
            self.static_text = self.layout.conf.read_text()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"nginx-{self.name}"
        )
        log.info("nginx_adopted", gateway=self.name, pid=pid)

    async def apply_static(self, text: str, static_id: str) -> bool:
        """Make `text` (whose id is `static_id`) the running static config. True if
        NGINX was (re)started or reloaded; NginxError or PortInUse if it kept the
        previous one (or could not start)."""
        if text == self.static_text and self._running():
            return False
        self._check_reachable_by_workers()
        self._make_socket_dir()
        staged = self.layout.conf.with_suffix(".conf.new")
        staged.write_text(text)
        await self._validate(staged)
        staged.replace(self.layout.conf)
        logged_from = self._error_log_size()
        if self._running():
            draining = await self._drain(_DRAIN_EXPIRY)
            try:
                await self._reload()
                await self._confirm(static_id, logged_from)
            finally:
                if draining:
                    await asyncio.sleep(_DRAIN_AFTER)
                    await self._drain(0)
        else:
            await self._start()
            await self._confirm(static_id, logged_from)
            await self._send_mesh_certificate()
        self.static_text = text
        return True

    async def set_mesh_certificate(self, chain_pem: str, key_pem: str) -> None:
        """Hand NGINX the gateway's mesh workload certificate (lua/agc/mesh.lua): no
        reload; connections opened from now on present it."""
        self.mesh_certificate = (chain_pem, key_pem)
        await self._send_mesh_certificate()

    async def _send_mesh_certificate(self) -> None:
        if self.mesh_certificate is None or not self._running():
            return
        chain, key = self.mesh_certificate
        body = json.dumps({"chain": chain, "key": key}).encode()
        status, answer = await self._request("PUT", body, path="/mesh")
        if status != 200:
            raise NginxError(f"the data plane refused the mesh certificate: {answer.strip()}")

    async def _drain(self, seconds: float) -> bool:
        """Drain mode on for `seconds` (0: off); True if NGINX took it.

        A reload makes the old workers close their idle keep-alive connections as
        they exit, and a client that sends its next request at that moment gets no
        answer (wrk counts read errors). In drain mode every response closes its
        connection (router.lua, @agc_drain), so a busy client moves to a fresh
        connection before the reload and none is caught sending on a closing one.
        Turning it on waits `_DRAIN_BEFORE` for that. A master running older Lua
        without drain mode (adopted across an upgrade) is reloaded as before.
        """
        try:
            status, _ = await self._request("PUT", None, path=f"/drain?seconds={seconds:g}")
        except (aiohttp.ClientError, OSError) as e:
            log.warning("nginx_drain_failed", gateway=self.name, error=str(e))
            return False
        if status != 200:
            log.warning("nginx_drain_refused", gateway=self.name, status=status)
            return False
        if seconds:
            await asyncio.sleep(_DRAIN_BEFORE)
        return True

    async def _confirm(self, static_id: str, logged_from: int) -> None:
        """Until a worker of the new configuration answers on the control socket.

        A reload can still fail after `nginx -t` passed (the master keeps its old
        workers and logs why, in the error log from offset `logged_from` on): then
        the Gateway must not be reported programmed. A port in use is told apart,
        and as soon as NGINX gives up on it.
        """
        deadline = asyncio.get_running_loop().time() + _READY_WITHIN
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                status, body = await self._request("GET", None, path="/static")
                if status == 200 and body.strip() == static_id:
                    return
            conflict = port_in_use(self._error_log(since=logged_from))
            if conflict is not None:
                raise conflict
            await asyncio.sleep(0.02)
        problem = self._logged_problem(since=logged_from)
        raise NginxError(
            "NGINX kept its previous configuration: "
            + (problem or "no error logged; see its error.log")
            + bind_hint(problem or "")
        )

    def _logged_problem(self, *, since: int) -> str | None:
        """The last problem NGINX logged from offset `since` on (a failed reload is
        an [emerg]; a Lua module its workers cannot load, an [error]), shortened."""
        lines = [
            line
            for line in self._error_log(since=since).splitlines()
            if any(level in line for level in ("[emerg]", "[alert]", "[crit]", "[error]"))
        ]
        return lines[-1][:300] if lines else None

    def _error_log_size(self) -> int:
        try:
            return (self.layout.prefix / "error.log").stat().st_size
        except OSError:
            return 0

    def _error_log(self, *, since: int) -> str:
        """What NGINX logged from offset `since` on."""
        try:
            with (self.layout.prefix / "error.log").open("rb") as log_file:
                log_file.seek(since)
                return log_file.read().decode(errors="replace")
        except OSError:
            return ""

    def _check_reachable_by_workers(self) -> None:
        """A master started as root runs its workers as `nobody`, and they open
        files under the prefix (request body buffers, the sockets behind a
        protocol sniffer): every directory on the way must let others through."""
        if os.geteuid() != 0:
            return
        for directory in (self.layout.prefix, *self.layout.prefix.parents):
            if not directory.stat().st_mode & stat.S_IXOTH:
                raise NginxError(
                    f"NGINX workers (user nobody) cannot reach {self.layout.prefix}: "
                    f"{directory} is not searchable by others; `chmod o+x {directory}` "
                    "or choose another --local-state-dir"
                )

    def _make_socket_dir(self) -> None:
        """The sockets' directory (see environment.socket_root), refusing one that
        someone else made: it may be under a shared /tmp."""
        root = self.layout.socket_dir.parent
        root.mkdir(mode=0o711, parents=True, exist_ok=True)
        info = root.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise NginxError(
                f"{root} is not a directory of this user's; set AGC_SOCKET_DIR to one that is"
            )
        self.layout.socket_dir.mkdir(mode=0o711, exist_ok=True)

    async def push(self, parts: Mapping[str, bytes], static_id: str) -> None:
        """Bring the router's state to `parts` (name -> JSON), sending only the parts
        that differ from what it holds; NGINX validates them before storing any."""
        known = self.parts if static_id == self.parts_static else None
        if known is None:
            changed, deleted = dict(parts), []
        else:
            changed = {name: text for name, text in parts.items() if known.get(name) != text}
            deleted = [name for name in known if name not in parts]
            if not changed and not deleted:
                return
        update = b"".join(
            (
                b'{"static":',
                json.dumps(static_id).encode(),
                b',"replace":true' if known is None else b"",
                b',"delete":',
                json.dumps(deleted).encode(),
                b',"set":{',
                b",".join(
                    json.dumps(name).encode() + b":" + text for name, text in changed.items()
                ),
                b"}}",
            )
        )
        # unknown until NGINX answers: a lost answer must not leave a stale baseline
        self.parts = None
        status, body = await self._request("PATCH", update)
        if status != 200:
            # refused after validation: NGINX stored nothing and holds what it held
            self.parts = known
            raise NginxError(f"the data plane refused the update: {body.strip()}")
        self.parts, self.parts_static = dict(parts), static_id

    async def stop(self, *, drain: float = 0.0) -> None:
        """Stop NGINX gracefully: in-flight requests finish.

        With `drain` seconds, drain mode comes first (see `_drain`) and lasts that
        long, so that clients on keep-alive connections are told to close and open
        new ones (elsewhere, once this pod's endpoint is removed) instead of having
        their idle connection closed under them when NGINX exits.
        """
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if drain > 0 and self._running() and await self._drain(drain + _DRAIN_EXPIRY):
            await asyncio.sleep(drain)
        if self._running():
            assert self._pid is not None
            os.kill(self._pid, signal.SIGQUIT)  # graceful: finish in-flight requests
            if not await self._exited(within=10.0):
                os.kill(self._pid, signal.SIGKILL)
                await self._exited(within=5.0)
        shutil.rmtree(self.layout.prefix, ignore_errors=True)
        shutil.rmtree(self.layout.socket_dir, ignore_errors=True)

    def _running(self) -> bool:
        if self._process is not None:
            return self._process.returncode is None
        if self._pid is None:
            return False
        try:
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return False
        return True

    async def _exited(self, *, within: float) -> bool:
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), within)
            except TimeoutError:
                return False
            return True
        deadline = asyncio.get_running_loop().time() + within
        while self._running():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _validate(self, conf: Path) -> None:
        process = await asyncio.create_subprocess_exec(
            NGINX,
            "-t",
            "-q",
            "-p",
            str(self.layout.prefix),
            "-c",
            str(conf),
            "-e",
            str(self.layout.prefix / "error.log"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        if process.returncode != 0:
            raise NginxError(
                f"nginx -t rejected the configuration: {out.decode(errors='replace').strip()}"
            )

    async def _spawn(self) -> None:
        # a master killed outright leaves its unix sockets behind; binding them fails
        for socket in self.layout.socket_dir.glob("*.sock"):
            socket.unlink(missing_ok=True)
        logged_from = self._error_log_size()
        self._process = await asyncio.create_subprocess_exec(
            NGINX,
            "-p",
            str(self.layout.prefix),
            "-c",
            str(self.layout.conf),
            "-e",
            str(self.layout.prefix / "error.log"),
            "-g",
            "daemon off;",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._pid = self._process.pid
        await self._wait_ready(logged_from)

    async def _start(self) -> None:
        await self._spawn()
        assert self._process is not None
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"nginx-{self.name}")
        log.info("nginx_started", gateway=self.name, pid=self._process.pid)

    async def _reload(self) -> None:
        assert self._pid is not None
        os.kill(self._pid, signal.SIGHUP)
        self.reloads += 1
        self.on_reload()
        log.info("nginx_reloaded", gateway=self.name, reloads=self.reloads)

    async def _wait_ready(self, logged_from: int) -> None:
        deadline = asyncio.get_running_loop().time() + _READY_WITHIN
        while asyncio.get_running_loop().time() < deadline:
            if self._process is not None and self._process.returncode is not None:
                stderr = b""
                if self._process.stderr is not None:
                    stderr = await self._process.stderr.read()
                logged = stderr.decode(errors="replace").strip()
                conflict = port_in_use(logged)
                if conflict is not None:
                    raise conflict
                raise NginxError(f"nginx exited on start: {logged}{bind_hint(logged)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                status, _ = await self._request("GET", None)
                if status == 200:
                    return
            await asyncio.sleep(0.02)
        raise NginxError(
            f"nginx did not open its control socket within {_READY_WITHIN:.0f}s: "
            + (self._logged_problem(since=logged_from) or "no error logged; see its error.log")
        )

    async def _supervise(self) -> None:
        while True:
            if self._process is not None:
                await self._process.wait()
            else:
                # adopted: not our child, so poll
                while self._running():
                    await asyncio.sleep(1.0)
            if self._stopping:
                return
            log.error("nginx_exited", gateway=self.name, pid=self._pid)
            await asyncio.sleep(_RESTART_DELAY)
            try:
                await self._start_again()
            except (NginxError, PortInUse, OSError) as e:
                log.error("nginx_restart_failed", gateway=self.name, error=str(e))

    async def _start_again(self) -> None:
        await self._spawn()
        assert self._process is not None
        if self.parts is not None and self.parts_static is not None:
            wanted, self.parts = self.parts, None  # a new master holds nothing yet
            await self.push(wanted, self.parts_static)
        await self._send_mesh_certificate()
        log.info("nginx_restarted", gateway=self.name, pid=self._process.pid)

    async def traffic_snapshot(self) -> dict[str, Any]:
        """The request counters of this NGINX (lua/agc/metrics.lua, snapshot())."""
        status, text = await self._request("GET", None, path="/metrics")
        if status != 200:
            raise NginxError(f"GET /metrics answered {status}: {text[:200]}")
        snapshot: dict[str, Any] = json.loads(text)
        return snapshot

    async def _request(
        self, method: str, body: bytes | None, *, path: str = "/config"
    ) -> tuple[int, str]:
        connector = aiohttp.UnixConnector(path=str(self.layout.control_socket))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(
                method, f"http://agc{path}", data=body, timeout=aiohttp.ClientTimeout(total=30)
            ) as response,
        ):
            return response.status, await response.text()
