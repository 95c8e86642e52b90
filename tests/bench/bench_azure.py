"""Azure provider: PUTs per burst of N changes, and time from a change to its PUT.

The provider talks to the ARM test server through the real SDK over HTTPS.
Each change is a new desired model for one Gateway, submitted the way the
work queue would (one reconcile at a time per Gateway, a new one as soon as
the previous returns, always with the latest state). The operation time
stands in for Azure's apply time (~30 s in reality) and is excluded from the
latency, which ends when the PUT reaches the server. Numbers, no assertions.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from agc_controller.providers.azure import AzureProvider
from tests.azure.conftest import (
    APPLICATION_GATEWAY,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    StaticToken,
    settings_for,
)
from tests.azure.models import model
from tests.azure.server import ArmServer, wait_idle

BURSTS = (1, 10, 50, 200)
# how long the burst's changes are spread over, and Azure's (stand-in) apply time
BURST_SECONDS = 1.0
OPERATION_SECONDS = 2.0


async def burst(arm: ArmServer, provider: AzureProvider, n: int) -> int:
    """N changes over BURST_SECONDS, reconciled like the work queue does; PUTs issued."""
    before = len(arm.puts())
    latest = {"version": 0}
    dirty = asyncio.Event()

    async def reconciler() -> None:
        # one reconcile per key at a time; changes while it runs make it dirty again
        while True:
            await dirty.wait()
            dirty.clear()
            version = latest["version"]
            await provider.apply(model(paths=(f"/v{version}",)))
            if version == n and not dirty.is_set():
                return

    task = asyncio.create_task(reconciler())
    for i in range(1, n + 1):
        latest["version"] = i
        dirty.set()
        await asyncio.sleep(BURST_SECONDS / n)
    await task
    await wait_idle(arm)
    return len(arm.puts()) - before


async def latency(arm: ArmServer, provider: AzureProvider, samples: int = 10) -> list[float]:
    """Seconds from apply() on an idle Application Gateway to the PUT arriving."""
    out = []
    for i in range(samples):
        await wait_idle(arm)
        puts = len(arm.puts())
        started = time.monotonic()
        await provider.apply(model(paths=(f"/lat{i}",)))
        out.append(arm.puts()[puts].time - started)
    return out


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with ArmServer(Path(tmp)) as arm:
            arm.seed_gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)
            arm.operation_seconds = OPERATION_SECONDS
            provider = AzureProvider(settings=settings_for(arm), credential=StaticToken())
            async with provider:
                await provider.apply(model(paths=("/warm",)))
                await wait_idle(arm)
                print(
                    f"operation time {OPERATION_SECONDS:.1f} s, changes spread over "
                    f"{BURST_SECONDS:.1f} s"
                )
                for n in BURSTS:
                    print(f"burst of {n:4d} changes: {await burst(arm, provider, n)} PUTs")
                arm.operation_seconds = 0.05
                times = await latency(arm, provider)
                print(
                    "change -> PUT issued (idle gateway): "
                    f"p50 {statistics.median(times) * 1000:.1f} ms, "
                    f"max {max(times) * 1000:.1f} ms over {len(times)} changes"
                )


if __name__ == "__main__":
    asyncio.run(main())
