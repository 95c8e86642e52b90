"""Pod networking for the node agent: one bridge on the host, one network namespace per pod.

The bridge `agb<tag>` holds the first address of the pod subnet; that address
is the node's InternalIP and every pod's default gateway. A pod's sandbox is
the network namespace `agcpod-<tag>-<n>`, whose `eth0` is one end of a veth
pair; the host end, `agv<tag><n in hex>`, is a port of the bridge. Host
processes (NGINX) reach pod IPs through the bridge's connected route; nothing
is forwarded off the host.

Invariants:
- `tag` is derived from the node name and our pid, so two agents on one host,
  or two test runs, never share a name; every interface name fits IFNAMSIZ.
- An address belongs to at most one sandbox. Released addresses are handed out
  again only after the rest of the subnet was (round robin), so an endpoint
  that is still cached somewhere does not point at a new pod right away.
- `<state_dir>/network.json` names the pid and tag of the agent that owns the
  state directory; the next agent removes what a crashed one left behind, and
  refuses to start while the owner is alive.
- `destroy()` is synchronous and best effort: it runs in the `finally` of a
  task that may be cancelled again while it cleans up.

The `ip` calls are async (the agent sets sandboxes up while it serves others);
`netns.py`'s helper is synchronous, so it is not reused here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import signal
import subprocess
from pathlib import Path

import attrs
import structlog

log = structlog.get_logger(__name__)

_NETNS_PREFIX = "agcpod"
_BRIDGE_PREFIX = "agb"
_VETH_PREFIX = "agv"
_IFNAMSIZ = 15  # the kernel's limit on interface names, without the NUL


class PodNetworkError(RuntimeError):
    """The pod network (or one sandbox) could not be set up; the message says why."""


@attrs.frozen
class PodSandbox:
    """One pod's network: its namespace, the host end of its veth, its address."""

    netns: str
    host_interface: str
    address: str


def _tag_for(node_name: str, pid: int) -> str:
    return hashlib.sha1(f"{node_name}\0{pid}".encode()).hexdigest()[:6]


async def _ip(*args: str, check: bool = True) -> str:
    process = await asyncio.create_subprocess_exec(
        "ip",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if check and process.returncode:
        raise PodNetworkError(f"`ip {' '.join(args)}` failed: {err.decode(errors='replace')}")
    return out.decode(errors="replace")


def _ip_sync(*args: str) -> str:
    result = subprocess.run(["ip", *args], check=False, capture_output=True, text=True)
    return result.stdout


def _kill_netns_processes(netns: str) -> None:
    for line in _ip_sync("netns", "pids", netns).split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(line), signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(tag: str) -> list[str]:
    """Delete every namespace and link named with `tag`; returns what was removed."""
    removed = []
    for line in _ip_sync("netns", "list").splitlines():
        name = line.split(" ", 1)[0]
        if name.startswith(f"{_NETNS_PREFIX}-{tag}-"):
            _kill_netns_processes(name)
            _ip_sync("netns", "del", name)
            removed.append(name)
    links = json.loads(_ip_sync("-j", "link", "show") or "[]")
    for link in links:
        name = str(link.get("ifname", ""))
        if name.startswith((f"{_VETH_PREFIX}{tag}", f"{_BRIDGE_PREFIX}{tag}")):
            _ip_sync("link", "del", name)
            removed.append(name)
    return removed


class PodNetwork:
    """The node's pod network: `open()` it once, then create and destroy sandboxes."""

    def __init__(self, *, subnet: str, node_name: str, state_dir: Path) -> None:
        network = ipaddress.ip_network(subnet, strict=True)
        if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > 29:
            raise ValueError(f"pod subnet {subnet} must be an IPv4 network of /29 or larger")
        self.subnet = network
        self._state_file = state_dir / "network.json"
        self._tag = _tag_for(node_name, os.getpid())
        self.bridge = f"{_BRIDGE_PREFIX}{self._tag}"
        # the host side of the pod network: the node's address and the pods' gateway
        self.gateway = str(network.network_address + 1)
        # offset (from the network address) tried first by the next allocation
        self._cursor = 2
        # addresses held by live sandboxes
        self._allocated: set[str] = set()
        # sandboxes not yet destroyed, by namespace name
        self._sandboxes: dict[str, PodSandbox] = {}
        self._next_sandbox = 0  # numbers sandbox names; never reused within a run
        self._opened = False

    async def open(self) -> None:
        """Remove a crashed agent's leftovers, check the subnet is free, create the bridge."""
        self._claim_state_dir()
        await self._check_subnet_is_free()
        await _ip("link", "add", self.bridge, "type", "bridge")
        self._opened = True
        await _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        await _ip("link", "set", self.bridge, "up")
        log.info("pod_network_opened", bridge=self.bridge, subnet=str(self.subnet))

    async def create_sandbox(self) -> PodSandbox:
        """A new namespace with `eth0` on the bridge, lo up and a default route."""
        address = self._allocate()
        number = self._next_sandbox
        self._next_sandbox += 1
        sandbox = PodSandbox(
            netns=f"{_NETNS_PREFIX}-{self._tag}-{number}",
            host_interface=f"{_VETH_PREFIX}{self._tag}{number:x}",
            address=address,
        )
        if len(sandbox.host_interface) > _IFNAMSIZ:
            self._allocated.discard(address)
            raise PodNetworkError("this agent has used up its interface names; restart it")
        self._sandboxes[sandbox.netns] = sandbox
        ns = sandbox.netns
        try:
            await _ip("netns", "add", ns)
            await _ip(
                "link", "add", sandbox.host_interface, "type", "veth",
                "peer", "name", "eth0", "netns", ns,
            )  # fmt: skip
            await _ip("link", "set", sandbox.host_interface, "master", self.bridge)
            await _ip("link", "set", sandbox.host_interface, "up")
            await _ip("-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
            await _ip("-n", ns, "link", "set", "eth0", "up")
            await _ip("-n", ns, "link", "set", "lo", "up")
            await _ip("-n", ns, "route", "add", "default", "via", self.gateway, "dev", "eth0")
        except BaseException:
            await self.destroy_sandbox(sandbox)
            raise
        return sandbox

    async def destroy_sandbox(self, sandbox: PodSandbox) -> None:
        """Kill whatever still runs in the namespace, delete it and its veth, free the address."""
        for pid in (await _ip("netns", "pids", sandbox.netns, check=False)).split():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        await _ip("link", "del", sandbox.host_interface, check=False)
        await _ip("netns", "del", sandbox.netns, check=False)
        self._sandboxes.pop(sandbox.netns, None)
        self._allocated.discard(sandbox.address)

    def destroy(self) -> None:
        """Remove every sandbox left and the bridge (synchronous; see the module docstring)."""
        for sandbox in list(self._sandboxes.values()):
            _kill_netns_processes(sandbox.netns)
            _ip_sync("link", "del", sandbox.host_interface)
            _ip_sync("netns", "del", sandbox.netns)
            self._allocated.discard(sandbox.address)
        self._sandboxes.clear()
        if self._opened:
            _ip_sync("link", "del", self.bridge)
            self._opened = False
        with contextlib.suppress(FileNotFoundError):
            if json.loads(self._state_file.read_text()).get("pid") == os.getpid():
                self._state_file.unlink()
        log.info("pod_network_destroyed", bridge=self.bridge)

    def _allocate(self) -> str:
        size = self.subnet.num_addresses
        # offsets 0 (network), 1 (gateway) and size - 1 (broadcast) are never handed out
        for step in range(size - 3):
            offset = 2 + (self._cursor - 2 + step) % (size - 3)
            address = str(self.subnet.network_address + offset)
            if address not in self._allocated:
                self._allocated.add(address)
                self._cursor = offset + 1
                return address
        raise PodNetworkError(f"no free address left in pod subnet {self.subnet}")

    def _claim_state_dir(self) -> None:
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            previous = json.loads(self._state_file.read_text())
        except (FileNotFoundError, ValueError):
            previous = {}
        pid, tag = previous.get("pid"), previous.get("tag")
        if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
            raise PodNetworkError(
                f"{self._state_file.parent} is in use by the node agent with pid {pid}; "
                "give this agent its own --state-dir"
            )
        if isinstance(tag, str) and tag.isalnum():
            removed = remove_leftovers(tag)
            if removed:
                log.info("pod_network_leftovers_removed", previous_pid=pid, removed=removed)
        self._state_file.write_text(json.dumps({"pid": os.getpid(), "tag": self._tag}))

    async def _check_subnet_is_free(self) -> None:
        for link in json.loads(await _ip("-j", "-4", "addr", "show") or "[]"):
            for info in link.get("addr_info") or []:
                if info.get("family") != "inet":
                    continue
                network = ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
                if network.overlaps(self.subnet):
                    raise PodNetworkError(
                        f"pod subnet {self.subnet} overlaps {info['local']}/{info['prefixlen']} "
                        f"on {link.get('ifname')}; pick another pod subnet"
                    )
