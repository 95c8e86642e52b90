"""Istio mesh identity for the data plane: workload certificates from istiod, kept current.

See docs/mesh.md. The modules: ca.py (istiod's certificate service),
identity.py (one SPIFFE ID's certificate and its renewal), sources.py (tokens
and the mesh's roots), errors.py.
"""

from agc_controller.mesh.ca import IstioCA
from agc_controller.mesh.errors import MeshError
from agc_controller.mesh.identity import (
    WorkloadCertificate,
    WorkloadIdentity,
    check_chain,
    spiffe_id,
    uri_names,
)
from agc_controller.mesh.sources import RootsConfigMap, RootsFile, TokenFile, TokenRequest

__all__ = [
    "IstioCA",
    "MeshError",
    "RootsConfigMap",
    "RootsFile",
    "TokenFile",
    "TokenRequest",
    "WorkloadCertificate",
    "WorkloadIdentity",
    "check_chain",
    "spiffe_id",
    "uri_names",
]
