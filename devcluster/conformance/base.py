"""What every step of a conformance run shares: where things are, what the run is
called and claims, how it reports progress and how it fails."""

from __future__ import annotations

import sys
from collections.abc import Callable

from devcluster.spawn import REPO_ROOT

REPO = REPO_ROOT

GATEWAY_API_VERSION = (REPO / "hack" / "gateway-api-version").read_text().strip()
KNOWN_FAILURES = REPO / "conformance" / "known-failures.txt"
REPORT = REPO / "conformance" / "reports" / GATEWAY_API_VERSION / "agc-controller-report.yaml"
# the in-cluster run's (--in-cluster: the Helm chart, a data-plane Deployment per Gateway)
IN_CLUSTER_REPORT = REPORT.with_name("agc-controller-in-cluster-report.yaml")

GATEWAY_CLASS = "agc-controller"
PROFILES = ("GATEWAY-HTTP", "GATEWAY-GRPC", "GATEWAY-TLS", "GATEWAY-TCP", "GATEWAY-UDP")
# the images the suite's manifests run, by repository (tags vary between manifests)
ECHO_IMAGE = "registry.k8s.io/gateway-api/echo-basic"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns"
IMPLEMENTATION = {
    "organization": "agc-controller",
    "project": "agc-controller",
    "url": "https://github.com/agc-controller/agc-controller",
    "contact": "https://github.com/agc-controller/agc-controller/issues",
}
GW = "gateway.networking.k8s.io"
# For GatewayStaticAddresses: the local provider binds a requested address when it is
# loopback and free (this one is outside its pool, 127.77.0.0/16, so no other Gateway
# holds it) and refuses any other with AddressNotUsable, sending it nothing.
USABLE_ADDRESS = "127.78.0.1"
UNUSABLE_ADDRESS = "192.0.2.10"  # TEST-NET-1 (RFC 5737)
# In cluster, a requested address becomes an external IP of the Gateway's Service
# when it is in the chart's dataplane.staticAddresses: the node's STATIC_SUBNET
IN_CLUSTER_USABLE_ADDRESS = "10.216.1.1"
# what main() undoes on exit, in reverse order: (what, how)
Teardown = list[tuple[str, Callable[[], None]]]


def say(message: str) -> None:
    print(f"[conformance] {message}", file=sys.stderr, flush=True)


class RunError(Exception):
    """The run could not get to a verdict; the message says what to do next."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM: tear down and exit 130."""
