"""CA certificate references (ConfigMap or Secret with `ca.crt`) → one PEM bundle.

Shared by frontend client validation (Gateway `spec.tls.frontend`) and
BackendTLSPolicy; they differ only in the reason for a wrong kind and in
whether a reference may cross namespaces (a ReferenceGrant check the caller
passes in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import namespaced_name
from agc_controller.translate import pem
from agc_controller.translate.refgrants import Ref
from agc_controller.translate.snapshot import Obj, Snapshot


@attrs.frozen
class CaBundle:
    # the usable certificates, concatenated; None when none is usable
    pem: str | None = attrs.field(repr=False)
    # (reason, message) per unusable reference
    problems: tuple[tuple[str, str], ...]


def resolve_ca_refs(
    refs: Iterable[Obj],
    *,
    field: str,
    namespace: str,
    snapshot: Snapshot,
    wrong_kind_reason: str,
    permitted: Callable[[Ref], bool] | None = None,
    skip: Callable[[Obj], bool] | None = None,
) -> CaBundle:
    """Resolve `refs` (the list at `field`); `namespace` is the referrer's. Refs
    `skip` picks are the caller's to resolve (kinds only some providers have)."""
    bundles: list[str] = []
    problems: list[tuple[str, str]] = []
    for i, ref in enumerate(refs):
        if skip is not None and skip(ref):
            continue
        ref_field = f"{field}[{i}]"
        group, kind = ref.get("group", ""), ref.get("kind", "")
        target = Ref(group, kind, ref.get("namespace") or namespace, str(ref.get("name", "")))
        where = f"{kind} {target.namespace}/{target.name}"
        if group != "" or kind not in ("ConfigMap", "Secret"):
            problems.append(
                (
                    wrong_kind_reason,
                    f"{ref_field} must refer to a ConfigMap or Secret, "
                    f"not {group or 'core'}/{kind}",
                )
            )
            continue
        if target.namespace != namespace and (permitted is None or not permitted(target)):
            problems.append(
                (
                    c.R_REF_NOT_PERMITTED,
                    f"{ref_field} refers to {where} in another namespace, and no "
                    "ReferenceGrant allows it",
                )
            )
            continue
        store = snapshot.config_maps if kind == "ConfigMap" else snapshot.secrets
        obj = store.get(namespaced_name(target.namespace, target.name))
        if obj is None:
            problems.append((c.R_INVALID_CA_CERTIFICATE_REF, f"{ref_field}: {where} not found"))
            continue
        try:
            bundles.append(pem.ca_bundle({**obj, "kind": kind}))
        except pem.InvalidMaterial as e:
            problems.append((c.R_INVALID_CA_CERTIFICATE_REF, f"{ref_field}: {where}: {e}"))
    joined = "\n".join(b.strip() for b in bundles) + "\n" if bundles else None
    return CaBundle(pem=joined, problems=tuple(problems))
