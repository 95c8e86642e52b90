"""The banner of `make run` trusts only a Programmed condition this run wrote: a
second run over an earlier run's state first forgets the status it left."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from devcluster import examples

GW = "gateway.networking.k8s.io"
NAMESPACE, NAME = examples.GATEWAY


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def gateway(kube: client.ApiClient) -> AsyncIterator[client.CustomObjectsApi]:
    custom = client.CustomObjectsApi(kube)
    await custom.create_namespaced_custom_object(
        GW,
        "v1",
        NAMESPACE,
        "gateways",
        {
            "apiVersion": f"{GW}/v1",
            "kind": "Gateway",
            "metadata": {"name": NAME},
            "spec": {
                "gatewayClassName": "example",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
    )
    try:
        yield custom
    finally:
        await custom.delete_namespaced_custom_object(GW, "v1", NAMESPACE, "gateways", NAME)


async def _programmed(custom: client.CustomObjectsApi, when: datetime.datetime) -> None:
    """Write the status a controller writes once the Gateway is programmed."""
    await _status(custom, when, programmed=True)


async def _status(
    custom: client.CustomObjectsApi, when: datetime.datetime, *, programmed: bool
) -> None:
    """Write a Programmed status as a controller would: True, or False for a port in use."""
    gw: dict[str, Any] = await custom.get_namespaced_custom_object(
        GW, "v1", NAMESPACE, "gateways", NAME
    )
    condition = {
        "type": "Programmed",
        "status": "True" if programmed else "False",
        "reason": "Programmed" if programmed else "AddressNotUsable",
        "message": "Programmed on the local data plane."
        if programmed
        else "127.77.0.1:80 (listener http) is in use by process 1 (nginx)",
        "observedGeneration": gw["metadata"]["generation"],
        "lastTransitionTime": _rfc3339(when),
    }
    gw["status"] = {
        "addresses": [{"type": "IPAddress", "value": "127.77.0.1"}],
        "conditions": [condition],
    }
    await custom.replace_namespaced_custom_object_status(GW, "v1", NAMESPACE, "gateways", NAME, gw)


async def test_an_earlier_runs_programmed_status_is_forgotten_and_not_trusted(
    kube: client.ApiClient, gateway: client.CustomObjectsApi
) -> None:
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    await _programmed(gateway, started - datetime.timedelta(hours=1))  # the earlier run's
    said: list[str] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            await examples.wait_programmed(kube, since=started, report=said.append, patience=0.5)
    assert said == [
        "the example Gateway is still not programmed after 0s; "
        "`AGC_LOG_LEVEL=info make run` shows the controller's logs"
    ]

    await examples.forget_previous_status(kube)
    gw = await gateway.get_namespaced_custom_object(GW, "v1", NAMESPACE, "gateways", NAME)
    assert [(c["type"], c["status"], c["reason"]) for c in gw["status"]["conditions"]] == [
        ("Accepted", "Unknown", "Pending"),
        ("Programmed", "Unknown", "Pending"),
    ]

    await _programmed(gateway, started)  # this run's
    async with asyncio.timeout(5.0):
        found = await examples.wait_programmed(kube, since=started, report=said.append)
    assert found["metadata"]["name"] == NAME


async def test_each_reason_the_gateway_is_not_programmed_is_said_once(
    kube: client.ApiClient, gateway: client.CustomObjectsApi
) -> None:
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    await _status(gateway, started, programmed=False)
    said: list[str] = []
    waiting = asyncio.create_task(examples.wait_programmed(kube, since=started, report=said.append))
    await asyncio.sleep(1.0)  # several looks at the same status
    await _programmed(gateway, started)
    async with asyncio.timeout(5.0):
        await waiting
    assert said == [
        "the example Gateway is not programmed (AddressNotUsable: 127.77.0.1:80 (listener "
        "http) is in use by process 1 (nginx))"
    ]


async def test_with_no_earlier_run_there_is_nothing_to_forget(kube: client.ApiClient) -> None:
    await examples.forget_previous_status(kube)  # no Gateway: no error
