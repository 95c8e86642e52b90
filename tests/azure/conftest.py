"""Fixtures for the azure provider: the ARM test server and a provider talking to it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from agc_controller.providers.azure import AzureProvider, AzureSettings
from tests.azure.server import ArmServer

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
RESOURCE_GROUP = "rg-test"
APPLICATION_GATEWAY = "appgw"


class StaticToken:
    """A token credential for the test server (which checks only that a bearer is sent)."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken("test-token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def settings_for(server: ArmServer, **overrides: Any) -> AzureSettings:
    values: dict[str, Any] = {
        "subscription_id": SUBSCRIPTION,
        "resource_group": RESOURCE_GROUP,
        "application_gateway": APPLICATION_GATEWAY,
        "arm_endpoint": server.endpoint,
        "connection_verify": str(server.ca_file),
        "polling_interval_s": 0.05,
        "retry_min_s": 0.05,
        "retry_max_s": 0.2,
    }
    values.update(overrides)
    return AzureSettings(**values)


@pytest.fixture
async def arm(tmp_path: Path) -> AsyncIterator[ArmServer]:
    async with ArmServer(tmp_path) as server:
        server.seed_gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)
        yield server


class CallCounter:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()

    def __call__(self, method: str, status: int) -> None:
        self.counts[(method, status)] += 1


@pytest.fixture
async def provider(arm: ArmServer) -> AsyncIterator[tuple[AzureProvider, CallCounter]]:
    counter = CallCounter()
    p = AzureProvider(settings=settings_for(arm), credential=StaticToken(), on_arm_call=counter)
    async with p:
        yield p, counter


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-azure-golden",
        action="store_true",
        help="rewrite tests/azure/golden/*.out.yaml from the current provider",
    )
