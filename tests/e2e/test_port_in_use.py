"""A listener address:port that another process holds, through real NGINX.

Debian's nginx.service takes 0.0.0.0:80 when the package is installed; here a
plain socket of this test process holds the Gateway's own loopback address and
port instead. The Gateway must say so (Programmed=False, AddressNotUsable,
naming the address:port and this process), other Gateways and the listeners
already served must go on serving, and once the socket is closed the Gateway
must become programmed by itself: nothing about it changes meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import GW, Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status, get


@pytest.fixture
def address() -> str:
    """A loopback address of this test's own, outside the pool Gateways get theirs from."""
    return f"127.79.{random.randint(1, 254)}.{random.randint(1, 254)}"


@pytest.fixture
def hold() -> Iterator[dict[int, socket.socket]]:
    """Sockets that `listen` opened, by port; those still open are closed at the end."""
    held: dict[int, socket.socket] = {}
    yield held
    for sock in held.values():
        sock.close()


def listen(held: dict[int, socket.socket], address: str, port: int) -> None:
    """Listen on `address:port` as another process would (no SO_REUSEPORT)."""
    sock = socket.socket()
    sock.bind((address, port))
    sock.listen()
    held[port] = sock


async def serve_from(cluster: Cluster, backends: BackendNamespace, *gateways: str) -> None:
    """An echo backend behind a route to each of `gateways`."""
    await cluster.service("svc", [backends.start_echo("port-in-use")])
    for gw in gateways:
        await cluster.route(
            gw,
            {
                "parentRefs": [{"name": gw}],
                "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}],
            },
        )


async def apply_gateway(cluster: Cluster, address: str, listeners: list[dict[str, Any]]) -> int:
    """Gateway "gw" on `address`; its new generation (no waiting)."""
    gw = await cluster.apply(
        {
            "apiVersion": f"{GW}/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {
                "gatewayClassName": cluster.class_name,
                "addresses": [{"type": "IPAddress", "value": address}],
                "listeners": listeners,
            },
        }
    )
    return int(gw["metadata"]["generation"])


async def not_programmed(cluster: Cluster, generation: int) -> dict[str, Any]:
    """Gateway "gw" once it reports Programmed=False at `generation`."""
    async with asyncio.timeout(30):
        while True:
            gw = await cluster.custom.get_namespaced_custom_object(
                GW, "v1", cluster.namespace, "gateways", "gw"
            )
            status = gw.get("status") or {}
            programmed = next(
                (c for c in status.get("conditions") or [] if c["type"] == "Programmed"), {}
            )
            if programmed.get("status") == "False" and (
                programmed.get("observedGeneration") == generation
            ):
                return status
            await asyncio.sleep(0.05)


def programmed_condition(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for c in conditions if c["type"] == "Programmed")


def held_by_this_process(status: dict[str, Any], where: str) -> dict[str, Any]:
    """The Gateway's Programmed condition, asserted to say that `where` ("address:port
    (listener name)") is in use by this test process."""
    programmed = programmed_condition(status["conditions"])
    assert programmed["reason"] == "AddressNotUsable"
    assert programmed["message"].startswith(f"{where} is in use by process {os.getpid()} ("), (
        programmed["message"]
    )
    return programmed


async def test_a_port_in_use_at_start_is_reported_and_retried_until_free(
    cluster: Cluster,
    backends: BackendNamespace,
    address: str,
    hold: dict[int, socket.socket],
) -> None:
    listen(hold, address, 80)
    await serve_from(cluster, backends, "gw", "other")
    generation = await apply_gateway(cluster, address, HTTP)

    status = await not_programmed(cluster, generation)
    programmed = held_by_this_process(status, f"{address}:80 (listener http)")
    assert "--local-port-offset" in programmed["message"]
    listener = programmed_condition(status["listeners"][0]["conditions"])
    assert (listener["status"], listener["reason"]) == ("False", "AddressNotUsable")

    # another Gateway is programmed and serves meanwhile
    other = await cluster.gateway("other", HTTP)
    await eventually_status(other, "/", 200)

    hold.pop(80).close()
    await cluster.wait_observed("gw", generation)
    await eventually_status(address, "/", 200)


async def test_a_port_in_use_on_reload_leaves_the_served_listeners_serving(
    cluster: Cluster,
    backends: BackendNamespace,
    address: str,
    hold: dict[int, socket.socket],
) -> None:
    await serve_from(cluster, backends, "gw")
    await cluster.wait_observed("gw", await apply_gateway(cluster, address, HTTP))
    await eventually_status(address, "/", 200)

    listen(hold, address, 8081)
    extra = [*HTTP, {"name": "extra", "port": 8081, "protocol": "HTTP"}]
    generation = await apply_gateway(cluster, address, extra)

    status = await not_programmed(cluster, generation)
    held_by_this_process(status, f"{address}:8081 (listener extra)")
    # NGINX kept its previous configuration: port 80 still answers
    assert (await get(address, "/"))[0] == 200

    hold.pop(8081).close()
    await cluster.wait_observed("gw", generation)
    await eventually_status(address, "/", 200, port=8081)
