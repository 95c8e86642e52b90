"""What a change costs the in-cluster data plane's delivery (pure, in-process;
numbers only, no assertions).

One Gateway with N host routes beside 10 catch-alls (bench_scale's routes). For
the first write (every shard and the manifest) and for one-route edits (a
response header filter on one route, 10 routes in turn): the Secrets' data sent
(base64, as the apiserver receives it), the controller's time to build the
shards by difference and encode those it writes, and an agent's time to decode
the manifest and the shards it reads. Translation is not counted.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

from agc_controller.dataplane.config import (
    Manifest,
    decode_manifest,
    decode_shard,
    encode_manifest,
)
from agc_controller.dataplane.shards import ShardedState
from agc_controller.translate import Memo, Snapshot, TranslateSettings, translate_gateway
from agc_controller.translate.model import LoadBalancer
from tests.bench.bench_scale import CATCH_ALLS, GW, NS, catch_all, endpoint_slice, host_route

SIZES = (1000, 3000, 5000)
EDITS = 10
CONTROLLER = "agc-controller.io/delivery-bench"
SETTINGS = TranslateSettings(controller_name=CONTROLLER)


def base_objects() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": f"{GW}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "bench"},
            "spec": {"controllerName": CONTROLLER},
        },
        {
            "apiVersion": f"{GW}/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": NS, "generation": 1},
            "spec": {
                "gatewayClassName": "bench",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc", "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
        endpoint_slice(["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    ]


def with_filter(route: dict[str, Any]) -> dict[str, Any]:
    edited = copy.deepcopy(route)
    edited["metadata"]["generation"] = edited["metadata"].get("generation", 1) + 1
    edited["spec"]["rules"][0]["filters"] = [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "X-Edited", "value": "yes"}]},
        }
    ]
    return edited


def deliver(
    sharded: ShardedState, model: LoadBalancer, last: Manifest | None
) -> tuple[Manifest, dict[int, dict[str, str]], dict[str, str], float]:
    """Build and encode what the provider writes after `last`: the changed shards
    and the manifest; with the controller's time."""
    started = time.perf_counter()
    manifest = sharded.build(model)
    listed = last.shards if last is not None else {}
    shards = {s: sharded.data(s) for s, d in manifest.shards.items() if listed.get(s) != d}
    data = encode_manifest(manifest)
    return manifest, shards, data, time.perf_counter() - started


def read(manifest_data: dict[str, str], shards: dict[int, dict[str, str]]) -> float:
    """An agent's time to decode the manifest and the shards it fetches."""
    started = time.perf_counter()
    decode_manifest({"data": manifest_data})
    for shard, data in shards.items():
        decode_shard({"data": data}, shard)
    return time.perf_counter() - started


def sent(manifest_data: dict[str, str], shards: dict[int, dict[str, str]]) -> int:
    return sum(len(v) for data in (manifest_data, *shards.values()) for v in data.values())


def measure(n: int) -> str:
    routes = [host_route(i) for i in range(n)] + [catch_all(i) for i in range(CATCH_ALLS)]
    for route in routes:
        route["metadata"]["generation"] = 1
    # the same objects between translations, as the informers' cache keeps them
    base, memo, sharded = base_objects(), Memo(), ShardedState()

    def model() -> LoadBalancer:
        snapshot = Snapshot.from_objects(base + routes)
        result = translate_gateway(snapshot, f"{NS}/gw", SETTINGS, memo=memo).load_balancer
        assert result is not None
        return result

    manifest, shards, data, first_s = deliver(sharded, model(), None)
    first = (len(shards), sent(data, shards), first_s, read(data, shards))
    edits = []
    for i in range(EDITS):
        index = (i * 997) % n
        routes[index] = with_filter(routes[index])
        manifest, shards, data, build_s = deliver(sharded, model(), manifest)
        edits.append((len(shards), sent(data, shards), build_s, read(data, shards)))
    bytes_, build, agent = (statistics.median(e[k] for e in edits) for k in (1, 2, 3))
    return (
        f"{n:>6} | {first[0]:>2} shards {first[1] / 1024:>6.1f} KiB {first[2] * 1000:>6.1f} ms"
        f" {first[3] * 1000:>6.1f} ms | {min(e[0] for e in edits)}-{max(e[0] for e in edits)}"
        f" shard(s) {bytes_ / 1024:>5.1f} KiB {build * 1000:>5.1f} ms {agent * 1000:>5.1f} ms"
    )


def main() -> None:
    print("In-cluster delivery: Secrets' data sent (base64), controller build+encode, agent decode")
    print(" routes | first write: sent, controller, agent | one-route edit (median of 10)")
    for n in SIZES:
        print(measure(n))


if __name__ == "__main__":
    main()
