"""Health probes, one per backend settings.

With a HealthCheckPolicy, the probe is the policy's: its host, path, port,
interval, timeout, unhealthyThreshold and status ranges, in the protocol of
the backend settings (a probe must speak what its settings speak: Https under
a BackendTLSPolicy). Translation has refused what a probe cannot say (useTLS,
TCP and gRPC probes, healthyThreshold other than 1: Application Gateway takes
an endpoint back after one passed probe, times in other than whole seconds).

Without one, the probe the backend's pods' readinessProbe describes
(graph/readiness.py: AGIC's behaviour), which translation keeps only where its
scheme is the one the backend is spoken to in. Its successThreshold is not used
(one passed probe, as above), its timing is clamped to ARM's bounds, and
without a Host header its host is the default probe's.

Else: Gateway API has no health checks, and Application Gateway's default
probe expects 200-399 from `/`, which marks a healthy app that answers 404
there as down. Our probe asks the same port and protocol with the settings'
host name and counts any answer below 500 as alive: it detects dead pods, not
routes.
"""

from __future__ import annotations

import json

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json
from agc_controller.translate.model import HealthCheck

DEFAULT_CHECK = HealthCheck(
    interval_ms=15_000,
    timeout_ms=10_000,
    healthy_threshold=1,
    unhealthy_threshold=3,
    protocol="HTTP",
    path="/",
    status_codes=((200, 499),),
)
# ARM's bounds for a probe's interval and timeout (seconds) and unhealthyThreshold
SECONDS_MAX = 86400
UNHEALTHY_THRESHOLD_MAX = 20


def add_probe(
    c: Collector, *, readable: str, protocol: str, has_host_name: bool, check: HealthCheck | None
) -> Json:
    return _add(c, readable, _probe(check or DEFAULT_CHECK, protocol, has_host_name))


def _probe(check: HealthCheck, protocol: str, has_host_name: bool) -> Json:
    props: Json = {
        "protocol": protocol,
        "path": check.path or "/",
        # whole seconds (translation refuses others for a policy; pods count seconds)
        "interval": _clamp(check.interval_ms // 1000, SECONDS_MAX),
        "timeout": _clamp(check.timeout_ms // 1000, SECONDS_MAX),
        "unhealthyThreshold": _clamp(check.unhealthy_threshold, UNHEALTHY_THRESHOLD_MAX),
        "match": {"statusCodes": [f"{start}-{end}" for start, end in check.status_codes]},
    }
    if check.host:
        props["host"] = check.host
    elif has_host_name:
        props["pickHostNameFromBackendHttpSettings"] = True
    else:
        # v2 needs a host for probes; pods answer on their IP whatever the Host header
        props["host"] = "localhost"
    if check.port is not None:
        props["port"] = check.port
    return props


def _clamp(value: int, high: int) -> int:
    return max(1, min(high, value))


def _add(c: Collector, readable: str, props: Json) -> Json:
    # settings that differ only in what the probe ignores share one probe
    name = naming.child_name(
        c.gateway, "probe", f"{readable}-{naming.digest(json.dumps(props, sort_keys=True))}"
    )
    return c.add("probes", name, props)
