"""A port in use: NGINX's words for it."""

from __future__ import annotations

import pytest

from agc_controller.providers.local.nginx import port_in_use

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
