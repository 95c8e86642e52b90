"""Health probes, one per backend settings.

Gateway API has no health checks, and Application Gateway's default probe
expects 200-399 from `/`, which marks a healthy app that answers 404 there as
down. Our probe asks the same port and protocol with the settings' host name
and counts any answer below 500 as alive: it detects dead pods, not routes.
"""

from __future__ import annotations

import json

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json

INTERVAL_S = 15
TIMEOUT_S = 10
UNHEALTHY_THRESHOLD = 3


def add_probe(c: Collector, *, readable: str, protocol: str, has_host_name: bool) -> Json:
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
    # settings that differ only in what the probe ignores share one probe
    name = naming.child_name(
        c.gateway, "probe", f"{readable}-{naming.digest(json.dumps(props, sort_keys=True))}"
    )
    return c.add("probes", name, props)
