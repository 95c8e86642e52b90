"""References to objects already on an Application Gateway.

AGIC users name certificates, trusted root certificates and rewrite rule sets
that someone put on the Application Gateway by hand (or Terraform did): AGIC's
`appgw-ssl-certificate`, `appgw-trusted-root-certificate` and `rewrite-rule-set`.
Gateway API spells them as references of our kinds in group
`azure.agc-controller.io` where it lets an implementation take other kinds: a
listener's `certificateRefs` (SslCertificate), a BackendTLSPolicy's
`caCertificateRefs` (TrustedRootCertificate), an HTTPRoute rule's ExtensionRef
filter (RewriteRuleSet). The name is the child's name on the Application
Gateway; the azure provider refers to it and never modifies it (merge.py keeps
children it does not own, and refuses a Gateway naming one that is not there).

Only the azure provider has such objects: elsewhere a reference is refused where
it stands (the listener, the policy, the rule), never skipped.

A listener's certificate may also come from Azure Key Vault: its `tls.options`
key `azure.agc-controller.io/key-vault-secret-id` names the secret (without a
version: Application Gateway follows renewals), which the Application Gateway
reads with its user-assigned identity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agc_controller.core.resources import APPGW_GROUP
from agc_controller.translate.capabilities import Capabilities

# an Application Gateway child's name (ARM: 1-80 characters, a letter or digit
# first, a letter, digit or underscore last, letters, digits, `_`, `.` and `-`)
_CHILD_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")


# a Key Vault secret's identifier, in any Azure cloud: the vault's name (3-24
# characters), its DNS suffix, the secret's name, and optionally a version
_KEY_VAULT_SECRET = re.compile(
    r"^https://[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]\.vault\.[a-z0-9.-]+[a-z]"
    r"/secrets/[a-zA-Z0-9-]{1,127}(/[0-9a-fA-F]{32})?/?$"
)


def key_vault_problem(field: str, secret_id: object, capabilities: Capabilities) -> str | None:
    """Why a listener's Key Vault secret option cannot be used; None: it can."""
    if not capabilities.key_vault_certificates:
        return (
            f"{field}: a certificate from Azure Key Vault is not supported by the "
            f"{capabilities.provider} provider"
        )
    if not isinstance(secret_id, str) or not _KEY_VAULT_SECRET.match(secret_id):
        return (
            f"{field}: {str(secret_id)[:256]!r} is not a Key Vault secret identifier "
            "(https://<vault>.vault.azure.net/secrets/<name>)"
        )
    return None


def is_child_name(name: str) -> bool:
    """Whether an Application Gateway child may have this name."""
    return bool(_CHILD_NAME.match(name))


def names(ref: Mapping[str, Any], kind: str) -> bool:
    """Whether `ref` refers to an Application Gateway object of `kind`."""
    return ref.get("group") == APPGW_GROUP and ref.get("kind") == kind


def problem(field: str, ref: Mapping[str, Any], capabilities: Capabilities) -> str | None:
    """Why the reference at `field` (of an Application Gateway kind) cannot be used:
    not by this provider, a namespace (these objects have none), or a name that is
    not an Application Gateway child's. None: it can."""
    if not capabilities.application_gateway_children:
        return (
            f"{field} names {APPGW_GROUP}/{ref.get('kind')} {ref.get('name', '')!r}, an object "
            f"on an Application Gateway, which the {capabilities.provider} provider does not have"
        )
    return name_problem(field, ref)


def name_problem(field: str, ref: Mapping[str, Any]) -> str | None:
    """Why the reference's namespace or name cannot name an Application Gateway child."""
    kind, name = ref.get("kind"), str(ref.get("name", ""))
    if ref.get("namespace"):
        return f"{field}: {APPGW_GROUP}/{kind} has no namespace"
    if not is_child_name(name):
        return f"{field}: {name!r} is not the name of an Application Gateway {kind}"
    return None
