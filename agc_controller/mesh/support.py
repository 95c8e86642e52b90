"""What a local data-plane provider keeps for mesh mTLS, whichever runs the NGINXes.

Both local providers, the process mode's (LocalProvider) and the in-cluster one's
(DeploymentProvider), send traffic to a mesh endpoint only once the controller's
`EndpointVerifier` has seen it prove its pod's identity, and write a Gateway's
`agc-controller.io/MeshIdentity` condition. `MeshSupport` is that shared part:
the verifier and the certificate it checks with, the Gateways that have mesh
backends (tried again when verdicts or the certificate change), and the
condition's wording. Where the certificate NGINX presents comes from differs:
the controller's own in process mode, each data-plane pod's own in a cluster
(docs/mesh.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import ProviderCondition
from agc_controller.mesh.identity import WorkloadCertificate
from agc_controller.mesh.verify import EndpointVerifier
from agc_controller.translate.model import Endpoint

T = TypeVar("T")


@attrs.frozen
class Presented:
    """The workload certificate a data plane presents to mesh backends."""

    spiffe_id: str
    # RFC 3339
    expires: str


@attrs.define
class MeshSupport:
    # try a Gateway again (its mesh endpoints' verdicts, or its identity, changed)
    requeue: Callable[[ObjectKey], None]
    # which mesh endpoints proved their identity; None: mesh mTLS is off
    verifier: EndpointVerifier | None = None
    # the certificate the verifier checks endpoints with; None: none yet
    certificate: WorkloadCertificate | None = attrs.field(default=None, repr=False)
    # why that certificate is missing or stale, from whoever obtains it
    problem: Callable[[], str | None] = lambda: None
    # the Gateways with backends in the mesh
    _gateways: set[ObjectKey] = attrs.field(factory=set)

    async def build(self, build: Callable[[EndpointVerifier | None], T]) -> T:
        """`build(verifier)`, done again once the endpoints it asked about and were
        never checked are: a new route or pod gets traffic without waiting for a
        round of checks."""
        built = build(self.verifier)
        verifier = self.verifier
        if verifier is not None and verifier.unchecked() and await verifier.settle():
            built = build(verifier)
        return built

    def used(
        self,
        gateway: ObjectKey,
        *,
        uses_mesh: bool,
        endpoints: Callable[[], Iterable[Endpoint]],
    ) -> None:
        """What `gateway`'s data plane now sends to: whether it has mesh backends, and
        `endpoints()`, their endpoints (checked again as they come due; listed only
        with mesh mTLS on: every apply passes here)."""
        if uses_mesh:
            self._gateways.add(gateway)
        else:
            self._gateways.discard(gateway)
        if self.verifier is not None:
            self.verifier.use(gateway.namespaced_name, endpoints())

    def forget(self, gateway: ObjectKey) -> None:
        self.used(gateway, uses_mesh=False, endpoints=tuple)

    def use_certificate(self, certificate: WorkloadCertificate) -> None:
        """Check endpoints as `certificate` from now on."""
        if self.verifier is not None:
            self.verifier.use_certificate(certificate)
        # only once the checks can use it: the conditions then say it is in use
        self.certificate = certificate
        self.requeue_gateways()

    def requeue_gateways(self) -> None:
        for key in sorted(self._gateways, key=str):
            self.requeue(key)

    def condition(
        self, presented: Presented | None, problem: str | None, *, who: str
    ) -> ProviderCondition:
        """The MeshIdentity condition of a Gateway whose data plane (`who`, e.g. "the
        gateway") presents `presented` to mesh backends, and has `problem` obtaining
        or renewing it."""
        if presented is None:
            return ProviderCondition(
                type=c.MESH_IDENTITY,
                status=False,
                reason=c.R_CERTIFICATE_AUTHORITY_UNAVAILABLE if problem else c.R_PENDING,
                message=f"Backends in the mesh answer 503 until the mesh's CA signs {who}'s "
                f"workload certificate: {problem or 'waiting for it'}",
            )
        presents = (
            f"{who[0].upper()}{who[1:]} presents {presented.spiffe_id} to backends in the "
            f"mesh, valid until {presented.expires}"
        )
        if problem:
            return ProviderCondition(
                type=c.MESH_IDENTITY,
                status=True,
                reason=c.R_RENEWAL_FAILING,
                message=f"{presents}; renewing it fails: {problem}",
            )
        return ProviderCondition(
            type=c.MESH_IDENTITY,
            status=True,
            reason=c.R_CERTIFICATE_ISSUED,
            message=f"{presents} and renewed at half its lifetime",
        )
