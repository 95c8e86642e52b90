"""Who holds a TCP address:port that NGINX could not bind: best effort, through /proc.

A Gateway whose port another process holds reports that process (its pid and
command), because "address in use" alone sends a person hunting: on a stock
Debian host it is usually Debian's own `nginx.service` on 0.0.0.0:80, which
blocks every loopback address on port 80 too.

Only listening sockets can be found: `/proc/net/tcp{,6}` lists the listening
and connected ones, each with its inode, and `/proc/<pid>/fd` links name the
inodes a process holds. A socket matches when it listens on the port at the
address itself, or at the wildcard address (which takes the port on every
address); an exact match is preferred. Everything here may fail (a /proc
mounted with hidepid, a holder in another pid namespace, a process that exits
while we look): the answer is then None, never an exception. The lookup walks
every process's descriptors, so it runs in a thread, once per refusal.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs

_PROC = Path("/proc")
# /proc/net/tcp's state column for a listening socket (TCP_LISTEN)
_LISTEN = "0A"
# how much of a holder's command line a condition message carries
_COMMAND_CHARS = 100

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@attrs.frozen
class PortHolder:
    """A process that holds a listening socket."""

    pid: int
    # its command line, spaces for NULs, cut to _COMMAND_CHARS ("" if unreadable)
    command: str

    def describe(self) -> str:
        return f"process {self.pid} ({self.command})" if self.command else f"process {self.pid}"


def port_holder(address: str, port: int, *, proc: Path = _PROC) -> PortHolder | None:
    """The process listening on `address:port` (or on the wildcard address at
    `port`), the lowest pid if several share the socket (a master before its
    workers); None if none can be found."""
    try:
        wanted = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    matches = [
        (0 if _same(ip, wanted) else 1, inode)
        for ip, listen_port, inode in _listening(proc)
        if listen_port == port and (_same(ip, wanted) or _covers(ip, wanted))
    ]
    for _, inode in sorted(matches):
        pids = _pids_holding(proc, inode)
        if pids:
            pid = min(pids)
            return PortHolder(pid=pid, command=_command(proc, pid))
    return None


def _same(ip: IPAddress, wanted: IPAddress) -> bool:
    """Whether `ip` is `wanted`, also as its IPv4-mapped IPv6 form (in tcp6)."""
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return wanted in (ip, mapped)


def _covers(ip: IPAddress, wanted: IPAddress) -> bool:
    """Whether a socket on the wildcard `ip` takes the port on `wanted` too (an IPv6
    wildcard is dual-stack unless IPV6_V6ONLY, which /proc does not show)."""
    return ip.is_unspecified and (ip.version == 6 or wanted.version == 4)


def _listening(proc: Path) -> Iterator[tuple[IPAddress, int, str]]:
    """(address, port, inode) of every listening TCP socket in this network namespace."""
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, _, port = fields[1].partition(":")
            try:
                yield _address(address), int(port, 16), fields[9]
            except ValueError:
                continue


def _address(hex_words: str) -> IPAddress:
    """An address as the kernel prints it: 32-bit words in hex, each in host byte order."""
    raw = b"".join(
        int(hex_words[i : i + 8], 16).to_bytes(4, sys.byteorder)
        for i in range(0, len(hex_words), 8)
    )
    return ipaddress.ip_address(raw)


def _pids_holding(proc: Path, inode: str) -> list[int]:
    link = f"socket:[{inode}]"
    pids: list[int] = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return pids
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:  # not ours to read, or gone
            continue
        for fd in fds:
            try:
                if os.readlink(entry / "fd" / fd) == link:
                    pids.append(int(entry.name))
                    break
            except OSError:
                continue
    return pids


def _command(proc: Path, pid: int) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    if len(command) > _COMMAND_CHARS:
        command = command[: _COMMAND_CHARS - 3] + "..."
    return command
