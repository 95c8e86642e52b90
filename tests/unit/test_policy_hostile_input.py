"""A hostile value in any string field of our policies never reaches NGINX's
configuration: it is refused with the field named, or it travels as data in the
routing state — the static configuration stays byte for byte what it is without
the policy, and the other routes' rules stay as they were."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.providers.local.dynamic import router_state
from agc_controller.providers.local.environment import HostPaths, InstanceLayout
from agc_controller.providers.local.state import to_json
from agc_controller.providers.local.static import StaticSettings, render
from agc_controller.render.documents import translate_all
from agc_controller.translate import Snapshot

SETTINGS = local_translate_settings("agc-controller.io/gateway-controller")
# a JWKS with one RSA key, so that a provider's issuer is what the jwt case checks
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "n": base64.urlsafe_b64encode(_RSA.public_numbers().n.to_bytes(256, "big"))
                .rstrip(b"=")
                .decode(),
                "e": "AQAB",
            }
        ]
    }
)
GW = "gateway.networking.k8s.io"
HOSTILE = (
    '"; return 200 "owned',
    "x } location / { return 200; }",
    "$host$request_uri",
    "a\nb",
    "a\r\nX-Injected: 1",
    "\x00",
    "'",
    "x" * 5000,
    "(a+)+$",
)


def _objects() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": f"{GW}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "agc"},
            "spec": {"controllerName": "agc-controller.io/gateway-controller"},
        },
        {
            "apiVersion": f"{GW}/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default", "generation": 1},
            "spec": {
                "gatewayClassName": "agc",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        *(
            {
                "apiVersion": f"{GW}/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": "default", "generation": 1},
                "spec": {
                    "parentRefs": [{"name": "gw"}],
                    "hostnames": [f"{name}.example.com"],
                    "rules": [{"name": "all", "backendRefs": [{"name": "web", "port": 80}]}],
                },
            }
            for name in ("guarded", "other")
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "j", "namespace": "default"},
            "data": {"jwks.json": JWKS},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "users", "namespace": "default"},
            "type": "Opaque",
            "data": {".htpasswd": base64.b64encode(b"u:{SHA}abc=").decode()},
        },
    ]


ROUTE = {"group": GW, "kind": "HTTPRoute", "name": "guarded"}
SERVICE = {"group": "", "kind": "Service", "name": "web"}

# (kind, spec with the field holding VALUE, the field's path in messages)
FIELDS: list[tuple[str, dict[str, Any], str]] = [
    (
        "RateLimitPolicy",
        {"limit": {"requests": 1, "unit": "Second"}, "key": {"type": "Header", "header": "VALUE"}},
        "spec.key.header",
    ),
    ("HealthCheckPolicy", {"default": {"http": {"path": "VALUE"}}}, "spec.default.http.path"),
    ("HealthCheckPolicy", {"default": {"http": {"host": "VALUE"}}}, "spec.default.http.host"),
    ("HealthCheckPolicy", {"default": {"grpc": {"service": "VALUE"}}}, "spec.default.grpc.service"),
    (
        "BackendLoadBalancingPolicy",
        {
            "loadBalancing": {
                "strategy": "ConsistentHash",
                "consistentHash": {"type": "Cookie", "name": "VALUE"},
            }
        },
        "spec.loadBalancing.consistentHash.name",
    ),
    (
        "BackendLoadBalancingPolicy",
        {"connectionDraining": {"timeout": "VALUE"}},
        "spec.connectionDraining.timeout",
    ),
    ("AuthPolicy", {"ipAccess": {"allow": ["VALUE"]}}, "spec.ipAccess.allow[0]"),
    (
        "AuthPolicy",
        {"basic": {"secretRef": {"name": "users"}, "realm": "VALUE"}},
        "spec.basic.realm",
    ),
    ("AuthPolicy", {"apiKey": {"secretRefs": [{"name": "k"}], "header": "VALUE"}}, "spec.apiKey"),
    (
        "AuthPolicy",
        {"externalAuth": {"backendRef": {"name": "web", "port": 80}, "path": "VALUE"}},
        "spec.externalAuth.path",
    ),
    (
        "AuthPolicy",
        {
            "externalAuth": {
                "backendRef": {"name": "web", "port": 80},
                "headersToBackend": ["VALUE"],
            }
        },
        "spec.externalAuth.headersToBackend[0]",
    ),
    (
        "AuthPolicy",
        {"jwt": {"providers": [{"issuer": "VALUE", "jwks": {"configMapRef": {"name": "j"}}}]}},
        "spec.jwt.providers[0]",
    ),
]


def _with_value(spec: dict[str, Any], value: str) -> dict[str, Any]:
    return json.loads(json.dumps(spec).replace('"VALUE"', json.dumps(value)))


def _static_and_state(objects: list[dict[str, Any]]) -> tuple[str, str, Any]:
    translations = translate_all(Snapshot.from_objects(objects), SETTINGS)
    translation = translations.gateways["default/gw"]
    assert translation.load_balancer is not None
    router, needs = router_state(translation.load_balancer)
    layout = InstanceLayout(
        prefix=Path("/var/lib/agc/gw"),
        socket_root=Path("/run/agc"),
        host=HostPaths(
            modules_dir=Path("/usr/lib/nginx/modules"),
            lua_dir=Path("/opt/agc/lua"),
            njs_dir=Path("/opt/agc/njs"),
            multiarch="x86_64-linux-gnu",
        ),
    )
    static, _ = render("192.0.2.1", needs, layout, StaticSettings())
    return static, json.dumps(to_json(router)), translation


BASELINE_STATIC, _, BASELINE = _static_and_state(_objects())


@pytest.mark.parametrize(("kind", "spec", "field"), FIELDS, ids=lambda v: str(v)[:40])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_value_is_refused_or_stays_data(
    kind: str, spec: dict[str, Any], field: str, value: str
) -> None:
    target = SERVICE if kind in ("HealthCheckPolicy", "BackendLoadBalancingPolicy") else ROUTE
    policy = {
        "apiVersion": "agc-controller.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "hostile", "namespace": "default", "generation": 1},
        "spec": {"targetRefs": [target], **_with_value(spec, value)},
    }
    static, state, translation = _static_and_state([*_objects(), copy.deepcopy(policy)])
    assert static == BASELINE_STATIC, "a policy never changes the static configuration"
    (status,) = [s for s in translation.policy_statuses if s.name == "hostile"]
    accepted = status.ancestors[0].conditions[0]
    if accepted.status == "False":
        assert accepted.message.startswith(field), accepted.message
        assert value not in state, "a refused value reaches the data plane nowhere"
    else:
        assert json.dumps(value)[1:-1] in state, "an accepted value is JSON data"
    # the other route's rules are untouched
    other = [h for h in translation.load_balancer.hosts if h.hostname == "other.example.com"]
    base = [h for h in BASELINE.load_balancer.hosts if h.hostname == "other.example.com"]
    assert other == base
