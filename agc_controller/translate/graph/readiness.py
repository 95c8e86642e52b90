"""A backend's health probe from its pods' own readinessProbe, as AGIC builds it, for a
provider whose load balancer probes endpoints itself (Capabilities.probes_from_readiness).

Why: Application Gateway takes an endpoint out of the rotation by its own probe,
not by the EndpointSlice's readiness, and a fixed probe of `/` knows nothing of
the path the application says it is ready on. A HealthCheckPolicy governing the
backend always wins (translate/__init__.py asks only for the others).

Which probe: of every pod the backend's EndpointSlices target (ready or not: a
pod's spec does not follow its readiness), the container declaring the port the
endpoint serves (the slice's port for the Service port, i.e. the targetPort
resolved, named or numbered), and of it the readinessProbe if it is an `httpGet`,
else the livenessProbe if that is one. exec, tcpSocket and grpc probes say
nothing a GET can repeat: the backend keeps the provider's default probe. When
pods disagree (a rolling update between two specs), the first pod by name with a
probe decides, so the result does not depend on the order the informer delivered
them in.

What AGIC does differently (docs/azure.md): it takes the probe's Host from
`httpGet.host`, which Kubernetes defines as the address to connect to, not a
header, and ignores `httpHeaders`; here the Host is the `Host` entry of
`httpHeaders` and `httpGet.host` is ignored. AGIC cannot probe a port other than
the endpoint's; here such a port (a number, or the name of one of the container's
ports) is probed. Unset periodSeconds, timeoutSeconds and failureThreshold take
Kubernetes' defaults (the API server fills them in on every pod it stores), not
AGIC's 30 s, 30 s and 3. Passing answers are 200-399, kubelet's rule (and AGIC's).
Bounds are the provider's to apply (providers/azure/probes.py clamps to ARM's);
the path and Host travel into a probe request, so they are held to what a
request line and a Host header allow, and a probe with others is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agc_controller.translate.graph.backends import target_pod
from agc_controller.translate.hostnames import is_valid_hostname
from agc_controller.translate.model import HealthCheck
from agc_controller.translate.snapshot import Obj
from agc_controller.translate.validate import int_in, is_request_path

# Kubernetes' defaults for a probe's timing (core/v1 Probe)
PERIOD_S = 10
TIMEOUT_S = 1
FAILURE_THRESHOLD = 3
SUCCESS_THRESHOLD = 1
# kubelet counts an httpGet probe passed on 200-399
PASSING = ((200, 399),)
_INT32_MAX = 2**31 - 1


def readiness_check(
    endpoint_slices: tuple[Obj, ...], port_name: str | None, pods: Mapping[str, Obj]
) -> HealthCheck | None:
    """The probe of one Service port (named `port_name`, None when unnamed) its pods'
    readinessProbe (else livenessProbe) describes; None: none of them has an
    httpGet one the provider can repeat."""
    port_name = port_name or ""
    # pod key -> its probe
    found: dict[str, HealthCheck] = {}
    for endpoint_slice in endpoint_slices:
        port = next(
            (
                p.get("port")
                for p in endpoint_slice.get("ports") or []
                if (p.get("name") or "") == port_name
            ),
            None,
        )
        if not int_in(port, 1, 65535):
            continue
        namespace = endpoint_slice["metadata"]["namespace"]
        for endpoint in endpoint_slice.get("endpoints") or []:
            key = target_pod(endpoint, namespace)
            pod = pods.get(key) if key is not None and key not in found else None
            if key is not None and pod is not None and (check := pod_check(pod, port)):
                found[key] = check
    return found[min(found)] if found else None


def pod_check(pod: Obj, port: int) -> HealthCheck | None:
    """The probe of the container of `pod` declaring `port`, if it has an httpGet
    readinessProbe or livenessProbe the provider can repeat."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        ports = container.get("ports") or []
        if not any(p.get("containerPort") == port for p in ports):
            continue
        for kind in ("readinessProbe", "livenessProbe"):
            probe = container.get(kind) or {}
            if probe.get("httpGet") is not None:
                return _http_check(probe, ports, port)
        return None
    return None


def _http_check(probe: Obj, ports: list[Obj], port: int) -> HealthCheck | None:
    http = probe["httpGet"]
    probe_port = http.get("port")
    if isinstance(probe_port, str):
        # a name of one of the container's ports
        probe_port = next(
            (p.get("containerPort") for p in ports if p.get("name") == probe_port), None
        )
    path = http.get("path") or "/"
    host = next(
        (
            h.get("value")
            for h in http.get("httpHeaders") or []
            if str(h.get("name", "")).lower() == "host"
        ),
        None,
    )
    scheme = http.get("scheme", "HTTP")
    if (
        not int_in(probe_port, 1, 65535)
        or not is_request_path(path)
        or (host is not None and not is_valid_hostname(host, wildcard=False))
        or scheme not in ("HTTP", "HTTPS")
    ):
        return None
    return HealthCheck(
        interval_ms=_count(probe, "periodSeconds", PERIOD_S) * 1000,
        timeout_ms=_count(probe, "timeoutSeconds", TIMEOUT_S) * 1000,
        healthy_threshold=_count(probe, "successThreshold", SUCCESS_THRESHOLD),
        unhealthy_threshold=_count(probe, "failureThreshold", FAILURE_THRESHOLD),
        protocol="HTTPS" if scheme == "HTTPS" else "HTTP",
        # None: the endpoint's own port
        port=None if probe_port == port else probe_port,
        host=host,
        path=path,
        status_codes=PASSING,
    )


def _count(probe: Obj, field: str, default: int) -> int:
    value: Any = probe.get(field, default)
    return value if int_in(value, 1, _INT32_MAX) else default
