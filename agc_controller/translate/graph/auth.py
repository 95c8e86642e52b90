"""AuthPolicy (agc-controller.io/v1alpha1): who may send requests, parsed and checked.

    spec:
      targetRefs: [...]                 # a Gateway, listener, route or rule (graph/policies.py)
      ipAccess:                         # client addresses (CIDRs)
        deny: [203.0.113.0/24]          # checked first
        allow: [10.0.0.0/8]             # when set, only these
        trustedProxies: [10.1.0.0/16]   # peers whose X-Forwarded-For names the client
      apiKey:                           # or basic; at most one way of signing in
        secretRefs: [{name: keys}]      # type agc-controller.io/api-key: client name -> key
        header: X-Api-Key               # or query: api_key (default: header X-Api-Key)
        clientHeader: X-Client          # the client's name, to the backend
      basic:
        secretRef: {name: users}        # its ".htpasswd" key: user:hash lines
        realm: Restricted
      externalAuth:                     # or ask a Service (the ingress-nginx auth-url model)
        backendRef: {name: authz, port: 8080}
        path: /check                    # GET, with the request's headers
        headersToBackend: [X-User]      # copied from a 2xx answer onto the request
        timeout: 2s

An AuthPolicy that cannot be honoured (a wrong field, a missing Secret, a
provider without access control) fails closed: it still governs its targets,
and the data plane refuses their requests (500) until it is fixed.

Secrets are referenced as certificates are: in the policy's namespace, or in
another one that a ReferenceGrant opens to AuthPolicies. Keys reach the data
plane as SHA-256 digests; htpasswd hashes as they are (crypt(3): bcrypt,
SHA-256-crypt, SHA-512-crypt, or {SHA}); Apache's MD5 ($apr1$) and plain text
are refused (the data plane's crypt(3) does not know them).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any

import attrs

from agc_controller.core.resources import API_KEY_SECRET_TYPE, POLICY_GROUP
from agc_controller.translate.graph import jwt
from agc_controller.translate.graph.backends import resolve_backend
from agc_controller.translate.graph.policies import (
    FRONT_TARGETS,
    AttachedPolicies,
    PolicyNode,
    Target,
    build_attached,
    governing_name,
)
from agc_controller.translate.model import (
    ApiKeys,
    Auth,
    Backend,
    BasicAuth,
    ExternalAuth,
    IpAccess,
    JwtProvider,
)
from agc_controller.translate.pem import InvalidMaterial, decoded_data
from agc_controller.translate.refgrants import Ref, ReferenceGrants
from agc_controller.translate.snapshot import Obj, Snapshot
from agc_controller.translate.validate import duration_ms, is_request_path, is_token

KIND = "AuthPolicy"
HTPASSWD_KEY = ".htpasswd"
# the keys an htpasswd file may be under: ours, and ingress-nginx's auth-file
HTPASSWD_KEYS = frozenset({HTPASSWD_KEY, "auth"})
CIDRS_MAX = 64
KEYS_MAX = 1024
USERS_MAX = 1024
# crypt(3) schemes the data plane's libcrypt verifies, and {SHA} (checked in Lua)
_HASH_PREFIXES = ("$2a$", "$2b$", "$2y$", "$5$", "$6$", "{SHA}")
_REALM_MAX = 128
HEADERS_MAX = 16
# the ways of signing in; a policy takes at most one
_SIGN_IN = ("apiKey", "basic", "externalAuth", "jwt")


def build_auth(
    snapshot: Snapshot,
    grants: ReferenceGrants,
    *,
    provider_problem: Callable[[Auth], str | None],
) -> AttachedPolicies[Auth]:
    """Every AuthPolicy of the snapshot; each value's `source` is left empty (rules
    name it after the target the policy governs through, as rate limits do)."""
    return build_attached(
        KIND,
        snapshot.auth_policies.values(),
        lambda obj: parse_auth(obj, snapshot, grants),
        targets=FRONT_TARGETS,
        provider_problem=provider_problem,
        fail_closed=Auth(source="", refuse=True),
    )


def in_force(policy: PolicyNode[Auth], target: Target) -> Auth:
    """The AuthPolicy `policy` as it governs through `target`."""
    assert policy.value is not None  # only valid policies govern
    return attrs.evolve(policy.value, source=governing_name(policy, target))


def parse_auth(
    obj: Obj, snapshot: Snapshot, grants: ReferenceGrants
) -> tuple[Auth | None, str | None]:
    spec = obj.get("spec") or {}
    namespace = obj["metadata"]["namespace"]
    if not any(spec.get(k) is not None for k in ("ipAccess", *_SIGN_IN)):
        return None, (
            "spec.ipAccess, spec.apiKey, spec.basic, spec.externalAuth or spec.jwt is required"
        )
    ways = [k for k in _SIGN_IN if spec.get(k) is not None]
    if len(ways) > 1:
        return None, f"spec.{ways[0]} and spec.{ways[1]} are exclusive (one way of signing in)"
    ip = api_keys = basic = external = None
    providers: tuple[JwtProvider, ...] = ()
    if (config := spec.get("ipAccess")) is not None:
        ip, problem = _ip_access(config)
        if problem:
            return None, problem
    if (config := spec.get("apiKey")) is not None:
        api_keys, problem = _api_keys(config, namespace, snapshot, grants)
        if problem:
            return None, problem
    if (config := spec.get("basic")) is not None:
        basic, problem = _basic(config, namespace, snapshot, grants)
        if problem:
            return None, problem
    if (config := spec.get("externalAuth")) is not None:
        external, problem = _external(config, namespace, snapshot, grants)
        if problem:
            return None, problem
    if (config := spec.get("jwt")) is not None:
        providers, problem = _jwt(config, namespace, snapshot, grants)
        if problem:
            return None, problem
    return Auth(
        source="", ip=ip, api_keys=api_keys, basic=basic, external=external, jwt=providers
    ), None


def _jwt(
    config: Any, namespace: str, snapshot: Snapshot, grants: ReferenceGrants
) -> tuple[tuple[JwtProvider, ...], str | None]:
    providers = config.get("providers") if isinstance(config, dict) else None
    if not isinstance(providers, list) or not 1 <= len(providers) <= jwt.PROVIDERS_MAX:
        return (), f"spec.jwt.providers must list 1 to {jwt.PROVIDERS_MAX} providers"
    found = []
    for i, provider in enumerate(providers):
        field = f"spec.jwt.providers[{i}]"
        jwks = (provider.get("jwks") if isinstance(provider, dict) else None) or {}
        text = None
        if "secretRef" in jwks:
            secret, problem = _secret(
                jwks["secretRef"], f"{field}.jwks.secretRef", namespace, snapshot, grants
            )
            if problem:
                return (), problem
            text = jwt.jwks_text(secret, base64_data=True)
        elif "configMapRef" in jwks:
            ref = jwks["configMapRef"]
            name = ref.get("name") if isinstance(ref, dict) else None
            config_map = snapshot.config_maps.get(f"{namespace}/{name}")
            if config_map is None:
                return (), f"{field}.jwks.configMapRef: ConfigMap {namespace}/{name} does not exist"
            text = jwt.jwks_text(config_map, base64_data=False)
        elif "url" in jwks:
            url = jwks["url"]
            if not jwt.is_jwks_url(url):
                return (), f"{field}.jwks.url must be an https URL of at most 2048 characters"
            fetched = snapshot.remote_jwks.get(url)
            if fetched is None or fetched.text is None:
                why = fetched.problem if fetched is not None else "not fetched yet"
                return (), f"{field}.jwks.url: {why}"
            text = fetched.text
        else:
            return (), f"{field}.jwks needs secretRef, configMapRef or url"
        parsed, problem = jwt.parse_provider(provider, field, text)
        if problem or parsed is None:
            return (), problem
        found.append(parsed)
    issuers = [p.issuer for p in found]
    if len(set(issuers)) != len(issuers):
        return (), "spec.jwt.providers name an issuer twice"
    return tuple(found), None


def _external(
    config: Any, namespace: str, snapshot: Snapshot, grants: ReferenceGrants
) -> tuple[ExternalAuth | None, str | None]:
    if not isinstance(config, dict) or not isinstance(config.get("backendRef"), dict):
        return None, "spec.externalAuth.backendRef must name a Service port"
    resolved, backend_problem = resolve_backend(
        config["backendRef"],
        field="spec.externalAuth.backendRef",
        route_kind=KIND,
        route_namespace=namespace,
        snapshot=snapshot,
        grants=grants,
        default_protocol="http",
        from_group=POLICY_GROUP,
    )
    if backend_problem is not None or resolved.service is None:
        return None, backend_problem.message if backend_problem else "no Service"
    if resolved.protocol != "http":
        return None, "spec.externalAuth.backendRef must be a plain HTTP/1.1 Service port"
    path = config.get("path", "/")
    if not is_request_path(path):
        return None, (
            f"spec.externalAuth.path {str(path)[:64]!r} must start with / and hold only "
            "URL path and query characters"
        )
    headers = config.get("headersToBackend") or []
    if not isinstance(headers, list) or len(headers) > HEADERS_MAX:
        return None, f"spec.externalAuth.headersToBackend must list at most {HEADERS_MAX} names"
    for i, name in enumerate(headers):
        if not is_token(name):
            return (
                None,
                f"spec.externalAuth.headersToBackend[{i}] {str(name)[:64]!r} is not a header name",
            )
    timeout = config.get("timeout", "2s")
    timeout_ms = duration_ms(timeout) if isinstance(timeout, str) else None
    if timeout_ms is None or not 100 <= timeout_ms <= 60_000:
        return None, "spec.externalAuth.timeout must be a duration from 100ms to 60s"
    return ExternalAuth(
        backend=Backend(name=resolved.name, weight=1, valid=True),
        service=resolved.service,
        port_name=resolved.port_name,
        path=path,
        headers_to_backend=tuple(headers),
        timeout_ms=timeout_ms,
    ), None


def _cidrs(values: Any, field: str) -> tuple[tuple[str, ...], str | None]:
    if values is None:
        return (), None
    if not isinstance(values, list) or len(values) > CIDRS_MAX:
        return (), f"{field} must list at most {CIDRS_MAX} CIDRs"
    found = []
    for i, value in enumerate(values):
        try:
            found.append(str(ipaddress.ip_network(str(value), strict=False)))
        except ValueError:
            return (), f"{field}[{i}] {str(value)[:64]!r} is not an IP address or CIDR"
    return tuple(sorted(set(found))), None


def _ip_access(config: Any) -> tuple[IpAccess | None, str | None]:
    if not isinstance(config, dict):
        return None, "spec.ipAccess must be an object"
    lists = {}
    for name in ("deny", "allow", "trustedProxies"):
        lists[name], problem = _cidrs(config.get(name), f"spec.ipAccess.{name}")
        if problem:
            return None, problem
    if not (lists["deny"] or lists["allow"]):
        return None, "spec.ipAccess needs allow or deny"
    return IpAccess(
        deny=lists["deny"], allow=lists["allow"], trusted_proxies=lists["trustedProxies"]
    ), None


def _secret(
    ref: Any, field: str, namespace: str, snapshot: Snapshot, grants: ReferenceGrants
) -> tuple[Obj | None, str | None]:
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        return None, f"{field} must name a Secret"
    if ref.get("group", "") != "" or ref.get("kind", "Secret") != "Secret":
        return None, f"{field} must be a Secret of the core group"
    target = Ref("", "Secret", str(ref.get("namespace") or namespace), ref["name"])
    if not grants.allows(
        from_group=POLICY_GROUP, from_kind=KIND, from_namespace=namespace, to=target
    ):
        return None, (
            f"{field} refers to Secret {target.namespace}/{target.name}, and no ReferenceGrant "
            f"in {target.namespace} allows it"
        )
    secret = snapshot.secrets.get(f"{target.namespace}/{target.name}")
    if secret is None:
        return None, f"{field}: Secret {target.namespace}/{target.name} does not exist"
    return secret, None


def _text(secret: Obj, key: str) -> str | None:
    try:
        return decoded_data(secret, key, base64_data=True)
    except InvalidMaterial:
        return None


def _api_keys(
    config: Any, namespace: str, snapshot: Snapshot, grants: ReferenceGrants
) -> tuple[ApiKeys | None, str | None]:
    if not isinstance(config, dict):
        return None, "spec.apiKey must be an object"
    header, query = config.get("header"), config.get("query")
    if header is not None and query is not None:
        return None, "spec.apiKey takes header or query, not both"
    if header is None and query is None:
        header = "X-Api-Key"
    client_header = config.get("clientHeader")
    for name, value in (("header", header), ("query", query), ("clientHeader", client_header)):
        if value is not None and not is_token(value):
            return None, f"spec.apiKey.{name} {str(value)[:64]!r} is not a valid name"
    refs = config.get("secretRefs")
    if not isinstance(refs, list) or not refs:
        return None, "spec.apiKey.secretRefs must name at least one Secret"
    keys: dict[str, str] = {}
    for i, ref in enumerate(refs):
        field = f"spec.apiKey.secretRefs[{i}]"
        secret, problem = _secret(ref, field, namespace, snapshot, grants)
        if problem or secret is None:
            return None, problem
        if secret.get("type") != API_KEY_SECRET_TYPE:
            return None, f"{field}: the Secret's type must be {API_KEY_SECRET_TYPE}"
        for client in sorted(secret.get("data") or {}):
            key = _text(secret, client)
            if not key:
                return None, f"{field}: key {client[:64]!r} is not base64 text"
            keys[hashlib.sha256(key.encode()).hexdigest()] = client
    if not keys or len(keys) > KEYS_MAX:
        return None, f"spec.apiKey.secretRefs must hold 1 to {KEYS_MAX} keys"
    return ApiKeys(
        keys=tuple(sorted(keys.items())),
        header=header,
        query=query,
        client_header=client_header,
    ), None


def _basic(
    config: Any, namespace: str, snapshot: Snapshot, grants: ReferenceGrants
) -> tuple[BasicAuth | None, str | None]:
    if not isinstance(config, dict):
        return None, "spec.basic must be an object"
    realm = config.get("realm", "Restricted")
    if (
        not isinstance(realm, str)
        or not 1 <= len(realm) <= _REALM_MAX
        or any(ch in realm for ch in '"\\')
        or not realm.isprintable()
    ):
        return None, f"spec.basic.realm must be 1-{_REALM_MAX} printable characters, no quotes"
    secret, problem = _secret(
        config.get("secretRef"), "spec.basic.secretRef", namespace, snapshot, grants
    )
    if problem or secret is None:
        return None, problem
    key = config.get("key", HTPASSWD_KEY)
    if key not in HTPASSWD_KEYS:
        return None, f"spec.basic.key must be one of {', '.join(sorted(HTPASSWD_KEYS))}"
    text = _text(secret, key)
    if text is None:
        return None, f"spec.basic.secretRef: the Secret has no {key!r} key (base64 text)"
    users: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.strip().partition(":")
        if not sep or not user or ":" in hashed:
            return None, f"spec.basic.secretRef: {key} line {n} is not user:hash"
        if not hashed.startswith(_HASH_PREFIXES):
            return None, (
                f"spec.basic.secretRef: {key} line {n} ({user[:32]!r}) has a hash "
                "this data plane cannot verify; use bcrypt (htpasswd -B), SHA-256/512-crypt "
                "or {SHA}"
            )
        users[user] = hashed
    if not users or len(users) > USERS_MAX:
        return None, f"spec.basic.secretRef: {key} must hold 1 to {USERS_MAX} users"
    return BasicAuth(users=tuple(sorted(users.items())), realm=realm), None
