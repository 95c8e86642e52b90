"""Every condition type and reason the controller writes, in one place.

Reasons are the Gateway API v1.6 constants. Messages are capitalised, end with
a period, name the offending field, and are truncated to `MAX_MESSAGE` so a
hostile object cannot bloat status. A message may start with the field it is
about (`spec.listeners[1].protocol ...`): that field path is kept as written.
"""

from __future__ import annotations

import re

from agc_controller.core.status import Condition, ConditionStatus

MAX_MESSAGE = 1024

# condition types
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
CONFLICTED = "Conflicted"
OVERLAPPING_TLS_CONFIG = "OverlappingTLSConfig"
PARTIALLY_INVALID = "PartiallyInvalid"
SUPPORTED_VERSION = "SupportedVersion"
INSECURE_FRONTEND_VALIDATION_MODE = "InsecureFrontendValidationMode"
# ours: whether the gateway has its Istio workload identity (docs/mesh.md)
MESH_IDENTITY = "agc-controller.io/MeshIdentity"
# ours: whether the Gateway's Azure DNS records are in place (docs/azure.md)
DNS_RECORDS = "agc-controller.io/DNSRecords"

# reasons (shared by several types where the API reuses a name)
R_ACCEPTED = "Accepted"
R_PROGRAMMED = "Programmed"
R_RESOLVED_REFS = "ResolvedRefs"
R_PENDING = "Pending"
R_INVALID = "Invalid"
R_INVALID_PARAMETERS = "InvalidParameters"
R_SUPPORTED_VERSION = "SupportedVersion"
R_UNSUPPORTED_VERSION = "UnsupportedVersion"
R_LISTENERS_NOT_VALID = "ListenersNotValid"
R_UNSUPPORTED_ADDRESS = "UnsupportedAddress"
R_ADDRESS_NOT_ASSIGNED = "AddressNotAssigned"
R_ADDRESS_NOT_USABLE = "AddressNotUsable"
R_UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
R_PORT_UNAVAILABLE = "PortUnavailable"
R_UNSUPPORTED_VALUE = "UnsupportedValue"
R_HOSTNAME_CONFLICT = "HostnameConflict"
R_PROTOCOL_CONFLICT = "ProtocolConflict"
R_NO_CONFLICTS = "NoConflicts"
R_OVERLAPPING_HOSTNAMES = "OverlappingHostnames"
R_INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
R_INVALID_ROUTE_KINDS = "InvalidRouteKinds"
R_REF_NOT_PERMITTED = "RefNotPermitted"
R_INVALID_CA_CERTIFICATE_REF = "InvalidCACertificateRef"
R_INVALID_CA_CERTIFICATE_KIND = "InvalidCACertificateKind"
R_NO_VALID_CA_CERTIFICATE = "NoValidCACertificate"
R_INVALID_CLIENT_CERTIFICATE_REF = "InvalidClientCertificateRef"
R_CONFIGURATION_CHANGED = "ConfigurationChanged"
R_NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
R_NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
R_NO_MATCHING_PARENT = "NoMatchingParent"
R_INCOMPATIBLE_FILTERS = "IncompatibleFilters"
R_INVALID_KIND = "InvalidKind"
R_BACKEND_NOT_FOUND = "BackendNotFound"
R_CONFLICTED = "Conflicted"
R_TARGET_NOT_FOUND = "TargetNotFound"
# ListenerSet
R_NOT_ALLOWED = "NotAllowed"
R_PARENT_NOT_ACCEPTED = "ParentNotAccepted"
R_PARENT_NOT_PROGRAMMED = "ParentNotProgrammed"
# MeshIdentity
R_CERTIFICATE_ISSUED = "CertificateIssued"
R_RENEWAL_FAILING = "RenewalFailing"
R_CERTIFICATE_AUTHORITY_UNAVAILABLE = "CertificateAuthorityUnavailable"


# a leading API field path such as `spec.rules[0].matches` (never re-cased)
_FIELD_PATH = re.compile(r"^[a-z][A-Za-z0-9]*(\[[0-9]+\])*[.\[]")


def message(text: str) -> str:
    """A condition message: capitalised, ending with a period, bounded in length."""
    text = text.strip()
    if text and not text[0].isupper() and not _FIELD_PATH.match(text):
        text = text[0].upper() + text[1:]
    if text and not text.endswith("."):
        text += "."
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 4] + " ..."
    return text


def condition(
    type_: str, status: ConditionStatus, reason: str, text: str, generation: int
) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message(text),
        observed_generation=generation,
    )


def true(type_: str, reason: str, text: str, generation: int) -> Condition:
    return condition(type_, "True", reason, text, generation)


def false(type_: str, reason: str, text: str, generation: int) -> Condition:
    return condition(type_, "False", reason, text, generation)


def join_problems(problems: list[str]) -> str:
    """One message naming every problem (each already a sentence)."""
    return " ".join(message(p) for p in problems)
