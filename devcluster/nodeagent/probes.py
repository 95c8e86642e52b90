"""Container readiness: readinessProbe (exec, httpGet, tcpSocket; grpc as a TCP
connect), or, without one, "serving": declared TCP ports accept at the pod IP;
with none declared, anything listens in the pod's namespace, or the process is
no server (it ran a while and went idle). Liveness and startup probes are not
implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from devcluster.nodeagent.podspec import ConfigError
from devcluster.nodeagent.processes import Launch

NON_LISTENER_READY_AFTER = 1.0  # seconds a probe-less, port-less non-server runs before Ready
IDLE_FOR = 0.3  # seconds without CPU use after which a process that is not listening is no server
SERVING_POLL = 0.1  # seconds between checks that a probe-less container serves
CONNECT_TIMEOUT = 1.0  # seconds for a readiness check's TCP connect


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


async def accepts(address: str, port: int) -> bool:
    """Does `address:port` accept a TCP connection? The caller bounds the wait."""
    try:
        _, writer = await asyncio.open_connection(address, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Prober:
    """Readiness checks of the containers of one pod sandbox, all at the pod IP."""

    def __init__(self, *, pod_ip: str, netns: str, nsenter: str) -> None:
        self._pod_ip = pod_ip
        self._netns = netns  # the pod's network namespace
        self._nsenter = nsenter  # the host's nsenter(1), for exec probes

    async def track_readiness(
        self,
        spec: Mapping[str, Any],
        process: asyncio.subprocess.Process,
        launch: Launch,
        set_ready: Callable[[bool], None],
    ) -> None:
        """Tell `set_ready` the readiness of container `spec` running as `process`, as
        its readinessProbe finds it, or once it serves (without one); until cancelled."""
        probe = spec.get("readinessProbe")
        if probe is None:
            await self._wait_until_serving(spec, process)
            set_ready(True)
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
                    set_ready(True)
            else:
                successes, failures = 0, failures + 1
                if failures >= failure_threshold:
                    set_ready(False)
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
        netns = self._netns
        while True:
            if ports:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        if all([await accepts(self._pod_ip, port) for port in ports]):
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
        launch: Launch,
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
                        return await accepts(
                            self._pod_ip, probe_port(probe[kind].get("port"), spec)
                        )
        except (OSError, TimeoutError, aiohttp.ClientError, ConfigError):
            return False
        return False

    async def _exec_probe(
        self, command: Sequence[str], process: asyncio.subprocess.Process, launch: Launch
    ) -> bool:
        if not command:
            return False
        # the container's namespaces: its mounts, its network, its hostname; and its
        # root directory (entering a mount namespace alone resets the root to the
        # namespace's own: a node agent in a chroot would probe the host's files)
        probe = await asyncio.create_subprocess_exec(
            *(self._nsenter, "--target", str(process.pid)),
            *("--mount", "--net", "--uts", "--root", "--"),
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
        port = probe_port(http_get.get("port"), spec)
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


def probe_port(port: Any, spec: Mapping[str, Any]) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for declared in spec.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ConfigError("Unhealthy", f"probe port {port!r} is not a declared port")
