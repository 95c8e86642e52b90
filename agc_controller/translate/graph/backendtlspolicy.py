"""BackendTLSPolicy: which TLS settings apply to a Service port, and policy status.

Conflicts among policies on the same (Service, sectionName) go to the oldest,
then to the first by namespace/name; a sectionName-specific policy and a
whole-Service one do not conflict (the specific one governs its port). A
sectionName that is not a port name of the Service does not attach.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.resources import APPGW_TRUSTED_ROOT_CERTIFICATE
from agc_controller.core.status import Condition
from agc_controller.translate.capabilities import Capabilities
from agc_controller.translate.graph import appgw
from agc_controller.translate.graph.backends import in_mesh
from agc_controller.translate.graph.cabundles import resolve_ca_refs
from agc_controller.translate.model import SubjectAltName
from agc_controller.translate.snapshot import Obj, Snapshot
from agc_controller.translate.validate import precise_hostname


@attrs.frozen
class PolicyNode:
    key: ObjectKey
    generation: int
    created: str
    # (service, sectionName or None) pairs the policy targets
    targets: tuple[tuple[ObjectKey, str | None], ...]
    # the targets it attaches to (a sectionName must name a port of the Service)
    attached: tuple[tuple[ObjectKey, str | None], ...]
    sni: str
    ca_pem: str | None = attrs.field(repr=False)
    subject_alt_names: tuple[SubjectAltName, ...]
    # trusted root certificates already on the Application Gateway, by name (appgw.py)
    gateway_roots: tuple[str, ...]
    # Accepted=False reason/message (the policy cannot be used), if any
    accepted_problem: tuple[str, str] | None
    resolved_problem: tuple[str, str] | None
    # its Services are in an Istio-injected namespace and mesh mTLS is on: the policy
    # is used instead of the mesh's mTLS (docs/mesh.md), and says so
    overrides_mesh: bool = False

    def conditions(self, *, conflicted_with: ObjectKey | None) -> tuple[Condition, ...]:
        g = self.generation
        if conflicted_with is not None:
            accepted = c.false(
                c.ACCEPTED,
                c.R_CONFLICTED,
                f"BackendTLSPolicy {conflicted_with.namespace}/{conflicted_with.name} targets the "
                "same Service port and takes precedence (older, or first by namespace/name)",
                g,
            )
        elif self.accepted_problem:
            accepted = c.false(c.ACCEPTED, *self.accepted_problem, g)
        elif self.overrides_mesh:
            accepted = c.true(
                c.ACCEPTED,
                c.R_ACCEPTED,
                f"The policy is accepted; it takes precedence over the mesh's mTLS for its "
                f"Services (namespace {self.key.namespace} is Istio-injected)",
                g,
            )
        else:
            accepted = c.true(c.ACCEPTED, c.R_ACCEPTED, "The policy is accepted", g)
        if self.resolved_problem:
            resolved = c.false(c.RESOLVED_REFS, *self.resolved_problem, g)
        else:
            resolved = c.true(c.RESOLVED_REFS, c.R_RESOLVED_REFS, "All references are resolved", g)
        return (accepted, resolved)


@attrs.frozen
class Policies:
    # the policy in force per (service, sectionName or None)
    winners: dict[tuple[ObjectKey, str | None], PolicyNode]
    # policies that lost a conflict -> the policy that won it
    losers: Mapping[ObjectKey, ObjectKey]
    by_service: dict[ObjectKey, tuple[PolicyNode, ...]]

    def for_backend(self, service: ObjectKey, port_name: str | None) -> PolicyNode | None:
        if port_name is not None and (service, port_name) in self.winners:
            return self.winners[(service, port_name)]
        return self.winners.get((service, None))


def build_policies(snapshot: Snapshot, capabilities: Capabilities) -> Policies:
    nodes = [
        _build_policy(obj, snapshot, capabilities) for obj in snapshot.backend_tls_policies.values()
    ]
    nodes.sort(key=lambda p: (p.created, p.key.namespace, p.key.name))
    winners: dict[tuple[ObjectKey, str | None], PolicyNode] = {}
    losers: dict[ObjectKey, ObjectKey] = {}
    by_service: dict[ObjectKey, list[PolicyNode]] = defaultdict(list)
    for node in nodes:
        for target in node.targets:
            by_service[target[0]].append(node)
        for target in node.attached:
            if target in winners and winners[target].key != node.key:
                losers.setdefault(node.key, winners[target].key)
            else:
                winners.setdefault(target, node)
    return Policies(
        winners=winners,
        losers=losers,
        by_service={k: tuple(dict.fromkeys(v)) for k, v in by_service.items()},
    )


def _build_policy(obj: Obj, snapshot: Snapshot, capabilities: Capabilities) -> PolicyNode:
    meta = obj["metadata"]
    namespace = meta["namespace"]
    spec = obj.get("spec") or {}
    validation = spec.get("validation") or {}
    targets = tuple(
        (ObjectKey("Service", namespace, str(t.get("name"))), t.get("sectionName") or None)
        for t in spec.get("targetRefs") or []
        if t.get("group", "") == "" and t.get("kind") == "Service"
    )
    accepted_problem: tuple[str, str] | None = None
    resolved_problem: tuple[str, str] | None = None
    ca_pem: str | None = None
    gateway_roots: tuple[str, ...] = ()
    attached, unknown_sections = _attached_targets(targets, snapshot)
    hostname = str(validation.get("hostname", ""))
    if problem := precise_hostname(hostname):
        accepted_problem = (c.R_INVALID, f"spec.validation.hostname: {problem}")
    well_known = validation.get("wellKnownCACertificates")
    refs = validation.get("caCertificateRefs") or []
    if well_known is not None and well_known != "System":
        accepted_problem = (
            c.R_INVALID,
            f"spec.validation.wellKnownCACertificates {well_known!r} is not supported; use System",
        )
    elif refs:
        # a policy's CA refs never cross namespaces (they have no namespace field)
        gateway_roots, problems = _gateway_roots(refs, capabilities)
        resolved = resolve_ca_refs(
            refs,
            field="spec.validation.caCertificateRefs",
            namespace=namespace,
            snapshot=snapshot,
            wrong_kind_reason=c.R_INVALID_KIND,
            skip=lambda ref: appgw.names(ref, APPGW_TRUSTED_ROOT_CERTIFICATE),
        )
        problems += resolved.problems
        if problems:
            resolved_problem = (problems[0][0], c.join_problems([m for _, m in problems]))
        ca_pem = resolved.pem
        if ca_pem is None and not gateway_roots and accepted_problem is None:
            accepted_problem = (
                c.R_NO_VALID_CA_CERTIFICATE,
                "spec.validation.caCertificateRefs has no usable CA certificate",
            )
    sans, san_problem = _subject_alt_names(validation)
    if sans and not capabilities.backend_tls_subject_alt_names:
        # the data plane would check the hostname instead: a weaker check than asked
        san_problem = (
            c.R_INVALID,
            "spec.validation.subjectAltNames is not supported by the "
            f"{capabilities.provider} provider",
        )
    accepted_problem = accepted_problem or san_problem
    if targets and not attached:
        accepted_problem = (c.R_TARGET_NOT_FOUND, c.join_problems(unknown_sections))
    return PolicyNode(
        key=ObjectKey("BackendTLSPolicy", namespace, meta["name"]),
        generation=int(meta.get("generation", 1)),
        created=str(meta.get("creationTimestamp", "")),
        targets=targets,
        attached=tuple(attached),
        sni=hostname,
        ca_pem=ca_pem,
        subject_alt_names=tuple(sans),
        gateway_roots=gateway_roots,
        accepted_problem=accepted_problem,
        resolved_problem=resolved_problem,
        overrides_mesh=bool(attached)
        and capabilities.mesh
        and in_mesh(snapshot.namespaces.get(namespace)),
    )


def _gateway_roots(
    refs: list[Obj], capabilities: Capabilities
) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The Application Gateway trusted root certificates among a policy's CA refs, and
    the problems of those that cannot be used."""
    names: list[str] = []
    problems: list[tuple[str, str]] = []
    for i, ref in enumerate(refs):
        if not appgw.names(ref, APPGW_TRUSTED_ROOT_CERTIFICATE):
            continue
        if problem := appgw.problem(f"spec.validation.caCertificateRefs[{i}]", ref, capabilities):
            # a kind this provider does not have, or a name no Application Gateway child has
            reason = (
                c.R_INVALID_CA_CERTIFICATE_REF
                if capabilities.application_gateway_children
                else c.R_INVALID_KIND
            )
            problems.append((reason, problem))
        else:
            names.append(str(ref["name"]))
    return tuple(names), problems


def _attached_targets(
    targets: tuple[tuple[ObjectKey, str | None], ...], snapshot: Snapshot
) -> tuple[list[tuple[ObjectKey, str | None]], list[str]]:
    """The targets a policy attaches to, and why the others do not."""
    attached, problems = [], []
    for i, (service, section) in enumerate(targets):
        spec = (snapshot.services.get(namespaced_name(service.namespace, service.name)) or {}).get(
            "spec"
        )
        ports = {p.get("name") for p in (spec or {}).get("ports") or []}
        if section is not None and section not in ports:
            problems.append(
                f"spec.targetRefs[{i}].sectionName {section!r} is not a port name of "
                f"Service {service.name}"
            )
        else:
            attached.append((service, section))
    return attached, problems


def _subject_alt_names(
    validation: Obj,
) -> tuple[tuple[SubjectAltName, ...], tuple[str, str] | None]:
    sans = []
    for i, san in enumerate(validation.get("subjectAltNames") or []):
        san_type = san.get("type")
        if san_type == "URI":
            sans.append(SubjectAltName(type="URI", value=str(san.get("uri", ""))))
        elif san_type == "Hostname":
            sans.append(SubjectAltName(type="Hostname", value=str(san.get("hostname", ""))))
        else:
            # never drop a check the user asked for: the policy cannot be honoured
            return (), (
                c.R_INVALID,
                f"spec.validation.subjectAltNames[{i}].type {str(san_type)[:64]!r} is not "
                "supported; use Hostname or URI",
            )
    return tuple(sans), None
