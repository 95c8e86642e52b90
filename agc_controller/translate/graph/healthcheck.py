"""HealthCheckPolicy (agc-controller.io/v1alpha1): its spec, parsed and checked.

The fields are Application Gateway for Containers' HealthCheckPolicy `default`
block, so its users recognise them; `tcp: {}` (a connection that opens) is ours:

    spec:
      targetRefs: [{group: "", kind: Service, name: web}]   # graph/policies.py
      default:
        interval: 5s              # GEP-2257 durations; defaults as AGC's
        timeout: 30s
        healthyThreshold: 1
        unhealthyThreshold: 3
        port: 8080                # default: each endpoint's own port
        http:                     # or grpc: {service: name}, or tcp: {}; none: http
          host: localhost
          path: /
          match:
            statusCodes: [{start: 200, end: 399}]
        useTLS: false             # http over TLS (certificates are not verified)

and passive ejection is ours too (AGC has none):

      passive:
        consecutiveFailures: 5    # 5xx answers or failed connections in a row
        ejectionTime: 30s         # out of the rotation for this long

Without `default` but with `passive`, nothing is probed. The CRD refuses most
bad values with CEL; these checks repeat them and name the field. The path and
host travel into a probe request the data plane writes, so they are held to
the characters a request line and a Host header allow.
"""

from __future__ import annotations

import re
from typing import Any

from agc_controller.translate.capabilities import Capabilities
from agc_controller.translate.graph.policies import (
    SERVICE_TARGETS,
    AttachedPolicies,
    build_attached,
)
from agc_controller.translate.hostnames import is_valid_hostname
from agc_controller.translate.model import BackendHealth, HealthCheck, PassiveHealthCheck
from agc_controller.translate.snapshot import Obj, Snapshot
from agc_controller.translate.validate import duration_ms, int_in, is_request_path

# what grpc.health.v1 names a service by (empty: the server as a whole); at most
# 127 bytes, so that the data plane's request encodes its length in one byte
GRPC_HEALTH_SERVICE = re.compile(r"^[A-Za-z0-9_.]{0,127}$")

KIND = "HealthCheckPolicy"

# passive ejection's defaults (ours: AGC has no passive checks)
PASSIVE_FAILURES = 5
PASSIVE_EJECTION = "30s"
EJECTION_MIN_MS = 1000
# AGC's defaults
INTERVAL = "5s"
TIMEOUT = "30s"
HEALTHY_THRESHOLD = 1
UNHEALTHY_THRESHOLD = 3
DURATION_MIN_MS = 100
DURATION_MAX_MS = 3_600_000
THRESHOLD_MAX = 100
STATUS_RANGES_MAX = 16


def build_health_checks(
    snapshot: Snapshot, capabilities: Capabilities
) -> AttachedPolicies[BackendHealth]:
    return build_attached(
        KIND,
        snapshot.health_check_policies.values(),
        lambda obj: parse_health_check(obj.get("spec") or {}),
        targets=SERVICE_TARGETS,
        provider_problem=capabilities.health_check_problem,
    )


def parse_health_check(spec: Obj) -> tuple[BackendHealth | None, str | None]:
    """Active probes from `spec.default` (AGC's defaults when neither it nor
    `spec.passive` is set), passive ejection from `spec.passive`."""
    passive_spec = spec.get("passive")
    probe = None
    if spec.get("default") is not None or passive_spec is None:
        probe, problem = _probe(spec.get("default") or {})
        if problem:
            return None, problem
    passive = None
    if passive_spec is not None:
        passive, problem = _passive(passive_spec)
        if problem:
            return None, problem
    return BackendHealth(probe=probe, passive=passive), None


def _passive(config: Any) -> tuple[PassiveHealthCheck | None, str | None]:
    if not isinstance(config, dict):
        return None, "spec.passive must be an object"
    failures = config.get("consecutiveFailures", PASSIVE_FAILURES)
    if not int_in(failures, 1, THRESHOLD_MAX):
        return (
            None,
            f"spec.passive.consecutiveFailures must be an integer from 1 to {THRESHOLD_MAX}",
        )
    window = config.get("ejectionTime", PASSIVE_EJECTION)
    ejection = duration_ms(window) if isinstance(window, str) else None
    if ejection is None or not EJECTION_MIN_MS <= ejection <= DURATION_MAX_MS:
        return None, "spec.passive.ejectionTime must be a duration from 1s to 1h"
    return PassiveHealthCheck(consecutive_failures=failures, ejection_ms=ejection), None


def _probe(config: Any) -> tuple[HealthCheck | None, str | None]:
    if not isinstance(config, dict):
        return None, "spec.default must be an object"
    interval, problem = _duration(config, "interval", INTERVAL)
    if problem:
        return None, problem
    timeout, problem = _duration(config, "timeout", TIMEOUT)
    if problem:
        return None, problem
    healthy, problem = _threshold(config, "healthyThreshold", HEALTHY_THRESHOLD)
    if problem:
        return None, problem
    unhealthy, problem = _threshold(config, "unhealthyThreshold", UNHEALTHY_THRESHOLD)
    if problem:
        return None, problem
    port = config.get("port")
    if port is not None and not int_in(port, 1, 65535):
        return None, "spec.default.port must be a port number (1-65535)"
    kinds = [k for k in ("http", "grpc", "tcp") if config.get(k) is not None]
    if len(kinds) > 1:
        return None, f"spec.default may set only one of http, grpc, tcp (it sets {kinds})"
    use_tls = config.get("useTLS", False)
    if not isinstance(use_tls, bool):
        return None, "spec.default.useTLS must be true or false"
    kind = kinds[0] if kinds else "http"
    if kind != "http":
        if use_tls:
            return None, f"spec.default.useTLS is only allowed with http (not {kind})"
        service = None
        if kind == "grpc":
            service = (config.get("grpc") or {}).get("service", "")
            if not isinstance(service, str) or not GRPC_HEALTH_SERVICE.match(service):
                return None, (
                    "spec.default.grpc.service must be a gRPC service name (letters, digits, "
                    "_ and ., at most 127)"
                )
        return (
            HealthCheck(
                interval_ms=interval,
                timeout_ms=timeout,
                healthy_threshold=healthy,
                unhealthy_threshold=unhealthy,
                protocol="GRPC" if kind == "grpc" else "TCP",
                port=port,
                grpc_service=service,
            ),
            None,
        )
    http = config.get("http") or {}
    host = http.get("host", "localhost")
    if not isinstance(host, str) or not is_valid_hostname(host, wildcard=False):
        return None, f"spec.default.http.host {str(host)[:64]!r} is not a valid hostname"
    path = http.get("path", "/")
    if not is_request_path(path):
        return None, (
            f"spec.default.http.path {str(path)[:64]!r} must start with / and hold only "
            "URL path and query characters (at most 1024)"
        )
    codes, problem = _status_codes((http.get("match") or {}).get("statusCodes"))
    if problem:
        return None, problem
    return (
        HealthCheck(
            interval_ms=interval,
            timeout_ms=timeout,
            healthy_threshold=healthy,
            unhealthy_threshold=unhealthy,
            protocol="HTTPS" if use_tls else "HTTP",
            port=port,
            host=host,
            path=path,
            status_codes=codes,
        ),
        None,
    )


def _duration(config: Obj, field: str, default: str) -> tuple[int, str | None]:
    value = config.get(field, default)
    ms = duration_ms(value) if isinstance(value, str) else None
    if ms is None or not DURATION_MIN_MS <= ms <= DURATION_MAX_MS:
        return 0, f"spec.default.{field} must be a duration from 100ms to 1h (like 5s)"
    return ms, None


def _threshold(config: Obj, field: str, default: int) -> tuple[int, str | None]:
    value = config.get(field, default)
    if not int_in(value, 1, THRESHOLD_MAX):
        return 0, f"spec.default.{field} must be an integer from 1 to {THRESHOLD_MAX}"
    return int(value), None


def _status_codes(ranges: Any) -> tuple[tuple[tuple[int, int], ...], str | None]:
    if ranges is None:
        return ((200, 399),), None
    field = "spec.default.http.match.statusCodes"
    if not isinstance(ranges, list) or not 1 <= len(ranges) <= STATUS_RANGES_MAX:
        return (), f"{field} must list 1 to {STATUS_RANGES_MAX} ranges"
    found = []
    for i, r in enumerate(ranges):
        start, end = (r.get("start"), r.get("end")) if isinstance(r, dict) else (None, None)
        if not (int_in(start, 100, 599) and int_in(end, 100, 599) and start <= end):
            return (), f"{field}[{i}] must have start <= end, both from 100 to 599"
        found.append((start, end))
    return tuple(sorted(found)), None
