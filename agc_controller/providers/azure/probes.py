"""Health probes, one per backend settings.

With a HealthCheckPolicy, the probe is the policy's: its host, path, port,
interval, timeout, unhealthyThreshold and status ranges, in the protocol of
the backend settings (a probe must speak what its settings speak: Https under
a BackendTLSPolicy). Translation has refused what a probe cannot say (useTLS,
TCP and gRPC probes, healthyThreshold other than 1: Application Gateway takes
an endpoint back after one passed probe, times in other than whole seconds).

Without one: Gateway API has no health checks, and Application Gateway's
default probe expects 200-399 from `/`, which marks a healthy app that answers
404 there as down. Our probe asks the same port and protocol with the
settings' host name and counts any answer below 500 as alive: it detects dead
pods, not routes.
"""

from __future__ import annotations

import json

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json
from agc_controller.translate.model import HealthCheck

INTERVAL_S = 15
TIMEOUT_S = 10
UNHEALTHY_THRESHOLD = 3


def add_probe(
    c: Collector, *, readable: str, protocol: str, has_host_name: bool, check: HealthCheck | None
) -> Json:
    if check is not None:
        return _add(c, readable, _policy_probe(check, protocol))
    props: Json = {
        "protocol": protocol,
        "path": "/",
        "interval": INTERVAL_S,
        "timeout": TIMEOUT_S,
        "unhealthyThreshold": UNHEALTHY_THRESHOLD,
        "match": {"statusCodes": ["200-499"]},
    }
    if has_host_name:
        props["pickHostNameFromBackendHttpSettings"] = True
    else:
        # v2 needs a host for probes; pods answer on their IP whatever the Host header
        props["host"] = "localhost"
    return _add(c, readable, props)


def _policy_probe(check: HealthCheck, protocol: str) -> Json:
    props: Json = {
        "protocol": protocol,
        "host": check.host or "localhost",
        "path": check.path or "/",
        # whole seconds (translation refuses others); ARM's floor is 1
        "interval": max(1, check.interval_ms // 1000),
        "timeout": max(1, check.timeout_ms // 1000),
        "unhealthyThreshold": check.unhealthy_threshold,
        "match": {"statusCodes": [f"{start}-{end}" for start, end in check.status_codes]},
    }
    if check.port is not None:
        props["port"] = check.port
    return props


def _add(c: Collector, readable: str, props: Json) -> Json:
    # settings that differ only in what the probe ignores share one probe
    name = naming.child_name(
        c.gateway, "probe", f"{readable}-{naming.digest(json.dumps(props, sort_keys=True))}"
    )
    return c.add("probes", name, props)
