"""A port in use: NGINX's words for it, and who holds the port (through /proc)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

import pytest

from agc_controller.providers.local.nginx import bind_hint, port_in_use
from agc_controller.providers.local.ports import port_holder

# what NGINX 1.22 wrote to stderr when a start found 127.77.1.2:80 taken (two
# workers with reuseport: two sockets per try, five tries)
START_STDERR = "\n".join(
    ["nginx: [emerg] bind() to 127.77.1.2:80 failed (98: Address already in use)"] * 10
    + ["nginx: [emerg] still could not bind()"]
)
# and to its error log when a reload found 127.77.1.2:8081 taken
RELOAD_LOG = "\n".join(
    ["2026/12/04 22:16:47 [emerg] 16099#16099: bind() to 127.77.1.2:8081 failed (98: "] * 5
    + ["2026/12/04 22:16:47 [emerg] 16099#16099: still could not bind()"]
)


@pytest.mark.parametrize(
    ("logged", "address", "port"),
    [(START_STDERR, "127.77.1.2", 80), (RELOAD_LOG, "127.77.1.2", 8081)],
)
def test_nginx_giving_up_on_a_port_in_use_is_told_apart(
    logged: str, address: str, port: int
) -> None:
    conflict = port_in_use(logged)
    assert conflict is not None
    assert (conflict.address, conflict.port) == (address, port)


def test_an_ipv6_address_keeps_its_brackets() -> None:
    conflict = port_in_use(START_STDERR.replace("127.77.1.2", "[::1]"))
    assert conflict is not None
    assert (conflict.address, conflict.port) == ("[::1]", 80)


@pytest.mark.parametrize(
    "logged",
    [
        # still trying (the verdict comes after the fifth try)
        START_STDERR.rsplit("\n", 1)[0],
        # another bind failure: not a port someone else holds
        "nginx: [emerg] bind() to 127.77.1.2:80 failed (13: Permission denied)",
        'nginx: [emerg] unknown directive "bogus" in nginx.conf:3',
        "",
    ],
)
def test_other_failures_are_not_a_port_in_use(logged: str) -> None:
    assert port_in_use(logged) is None


def test_a_port_below_1024_without_root_says_what_to_do() -> None:
    denied = "nginx: [emerg] bind() to 127.77.1.2:80 failed (13: Permission denied)"
    assert "--local-port-offset" in bind_hint(denied)
    assert bind_hint(START_STDERR) == ""
    assert bind_hint('nginx: [emerg] open() "/x" failed (13: Permission denied)') == ""


def test_the_holder_of_a_loopback_port_is_this_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        holder = port_holder("127.0.0.1", port)
    assert holder is not None
    assert holder.pid == os.getpid()
    assert holder.describe().startswith(f"process {os.getpid()} (")


def test_a_port_nobody_listens_on_has_no_holder() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: free again once closed
        port = sock.getsockname()[1]
    assert port_holder("127.0.0.1", port) is None


def _hex(address: str) -> str:
    """An address as /proc/net/tcp prints it."""
    packed = ipaddress.ip_address(address).packed
    return "".join(
        f"{int.from_bytes(packed[i : i + 4], sys.byteorder):08X}" for i in range(0, len(packed), 4)
    )


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """An empty stand-in for /proc."""
    (tmp_path / "net").mkdir()
    return tmp_path


def _table(proc: Path, name: str, *sockets: tuple[str, int, str, int]) -> None:
    """/proc/net/`name` listing (address, port, state, inode) rows."""
    lines = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"]
    for i, (address, port, state, inode) in enumerate(sockets):
        lines.append(
            f"{i:4}: {_hex(address)}:{port:04X} {_hex(address)}:0000 {state} "
            f"00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0 100 0 0 10 0"
        )
    (proc / "net" / name).write_text("\n".join(lines) + "\n")


def _process(proc: Path, pid: int, command: bytes, *inodes: int) -> None:
    (proc / str(pid) / "fd").mkdir(parents=True)
    (proc / str(pid) / "cmdline").write_bytes(command)
    for fd, inode in enumerate(inodes, start=3):
        (proc / str(pid) / "fd" / str(fd)).symlink_to(f"socket:[{inode}]")


def test_a_wildcard_listener_holds_the_port_on_every_address(proc: Path) -> None:
    # Debian's nginx.service: master and workers share 0.0.0.0:80
    _table(proc, "tcp", ("0.0.0.0", 80, "0A", 7001))
    _process(proc, 812, b"nginx: master process /usr/sbin/nginx -g daemon on;\0", 7001)
    _process(proc, 813, b"nginx: worker process\0", 7001)
    holder = port_holder("127.77.1.2", 80, proc=proc)
    assert holder is not None
    assert holder.describe() == "process 812 (nginx: master process /usr/sbin/nginx -g daemon on;)"


def test_a_listener_on_the_address_itself_comes_before_a_wildcard(proc: Path) -> None:
    _table(
        proc,
        "tcp",
        ("0.0.0.0", 80, "0A", 7001),
        ("127.77.1.2", 80, "0A", 7002),
        ("127.77.1.2", 8080, "0A", 7003),
        ("127.77.1.2", 80, "01", 7004),  # a connection, not a listener
    )
    _process(proc, 10, b"wildcard\0", 7001)
    _process(proc, 20, b"exact\0", 7002)
    _process(proc, 30, b"other port\0", 7003)
    _process(proc, 5, b"connected\0", 7004)
    holder = port_holder("127.77.1.2", 80, proc=proc)
    assert holder is not None
    assert (holder.pid, holder.command) == (20, "exact")


def test_a_dual_stack_ipv6_wildcard_holds_ipv4_ports_too(proc: Path) -> None:
    _table(proc, "tcp6", ("::", 443, "0A", 9001))
    _process(proc, 77, b"envoy\0", 9001)
    holder = port_holder("127.77.1.2", 443, proc=proc)
    assert holder is not None
    assert holder.pid == 77


def test_an_unreadable_holder_is_unknown_not_an_error(proc: Path) -> None:
    # hidepid, or a holder in another pid namespace: the socket is listed, no process is
    _table(proc, "tcp", ("127.77.1.2", 80, "0A", 7001))
    (proc / "812").mkdir()  # no fd directory to read
    assert port_holder("127.77.1.2", 80, proc=proc) is None


def test_no_socket_tables_is_unknown_not_an_error(tmp_path: Path) -> None:
    assert port_holder("127.77.1.2", 80, proc=tmp_path / "missing") is None
