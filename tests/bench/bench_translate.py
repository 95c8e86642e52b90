"""Translation time and process RSS for one Gateway with N HTTPRoutes (pure, no I/O).

Each size runs in a fresh interpreter so peak RSS belongs to that size alone.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

from agc_controller.translate import Snapshot, TranslateSettings, translate_gateway
from tests.bench import fixtures as f

SIZES = (100, 1000, 5000)


def measure(n: int) -> dict[str, float]:
    objects = [f.gateway_class("bench"), f.gateway("bench", "bench")]
    objects += [f.route("bench", i) for i in range(n)]
    objects += [f.service("bench", i) for i in range(100)]
    objects += [f.endpoint_slice("bench", i) for i in range(100)]
    snapshot = Snapshot.from_objects(objects)
    settings = TranslateSettings(controller_name=f.CONTROLLER)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        result = translate_gateway(snapshot, "bench/gw", settings)
        times.append(time.perf_counter() - started)
    assert result.attached_routes == {"http": n}
    return {
        "routes": n,
        "translate_ms_median": statistics.median(times) * 1000,
        "translate_ms_min": min(times) * 1000,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if len(sys.argv) == 2:
        print(json.dumps(measure(int(sys.argv[1]))))
        return
    print(f"{'routes':>7} {'translate median':>17} {'min':>9} {'peak RSS':>9}")
    for n in SIZES:
        out = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_translate", str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout)
        print(
            f"{r['routes']:>7} {r['translate_ms_median']:>14.1f} ms"
            f" {r['translate_ms_min']:>6.1f} ms {r['max_rss_mib']:>5.0f} MiB"
        )


if __name__ == "__main__":
    main()
