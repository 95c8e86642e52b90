"""The azure provider against the ARM test server through the real SDK (no kube-apiserver)."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from agc_controller.providers.azure import AzureProvider
from agc_controller.providers.azure.arm import API_VERSION
from agc_controller.translate.model import (
    Auth,
    BackendTLS,
    Frontend,
    IpAccess,
    LoadBalancer,
    RateLimit,
    Waf,
    WafCondition,
    WafCustomRule,
    WafRuleSet,
)
from tests.azure.conftest import (
    APPLICATION_GATEWAY,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    CallCounter,
    StaticToken,
    settings_for,
)
from tests.azure.models import model
from tests.azure.server import ArmServer, Failure, wait_idle

Provider = tuple[AzureProvider, CallCounter]


def _props(arm: ArmServer) -> dict:  # type: ignore[type-arg]
    return arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)["properties"]


def _names(arm: ArmServer, collection: str) -> list[str]:
    return [c["name"] for c in _props(arm).get(collection) or []]


async def test_apply_puts_once_and_reports_the_public_address(
    arm: ArmServer, provider: Provider
) -> None:
    p, counter = provider
    result = await p.apply(model())
    assert result.programmed, result.message
    assert [a.value for a in result.addresses] == ["203.0.113.10"]
    assert len(arm.puts()) == 1
    assert _props(arm)["provisioningState"] == "Succeeded"
    pools = _props(arm)["backendAddressPools"]
    assert pools[0]["properties"]["backendAddresses"] == [{"ipAddress": "10.2.0.1"}]
    # the same model again: GET, compare, no PUT
    again = await p.apply(model())
    assert again.programmed
    assert len(arm.puts()) == 1
    assert counter.counts[("PUT", 201)] == 1
    assert counter.counts[("GET", 200)] >= 3


async def test_put_carries_if_match(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    before = arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)["etag"]
    await p.apply(model())
    assert arm.puts()[0].headers["If-Match"] == before


async def test_412_rereads_and_retries(arm: ArmServer, provider: Provider) -> None:
    p, counter = provider
    arm.inject(Failure("PUT", 412, "PreconditionFailed", "The condition is not met."))
    result = await p.apply(model())
    assert result.programmed, result.message
    assert counter.counts[("PUT", 412)] == 1
    assert len(arm.puts()) == 1


async def test_429_honours_retry_after(arm: ArmServer, provider: Provider) -> None:
    p, counter = provider
    arm.inject(
        Failure("PUT", 429, "RetryableErrorDueToAnotherOperation", "busy", retry_after=0.5, times=1)
    )
    result = await p.apply(model())
    assert result.programmed
    busy = next(r for r in arm.requests if r.status == 429)
    accepted = arm.puts()[0]
    assert accepted.time - busy.time >= 0.45
    assert counter.counts[("PUT", 429)] == 1


async def test_500_and_failed_operation_are_retried(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    arm.inject(Failure("PUT", 500, "InternalServerError", "boom"))
    arm.inject(Failure("LRO", 0, "InternalServerError", "The operation failed."))
    result = await p.apply(model())
    assert result.programmed, result.message
    # the 500 never reached the gateway; the failed operation did and was PUT again
    assert len(arm.puts()) == 2
    assert _props(arm)["provisioningState"] == "Succeeded"


async def test_permanent_4xx_is_a_result_with_arms_message(
    arm: ArmServer, provider: Provider
) -> None:
    p, _ = provider
    arm.inject(
        Failure("PUT", 400, "ApplicationGatewayInvalidThing", "The thing is invalid.", times=5)
    )
    result = await p.apply(model())
    assert not result.programmed
    assert result.reason == "Invalid"
    assert "The thing is invalid." in result.message
    # unchanged wish, unchanged gateway: not PUT again
    puts = len(arm.calls("PUT"))
    await p.apply(model())
    assert len(arm.calls("PUT")) == puts


async def test_over_limit_is_refused_before_any_put(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    result = await p.apply(model(paths=tuple(f"/p{i}" for i in range(101))))
    assert not result.programmed
    assert "limit is 100" in result.message
    assert arm.calls("PUT") == []


async def test_unknown_application_gateway_is_invalid(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    result = await p.apply(
        model(annotations=(("azure.agc-controller.io/application-gateway", "missing"),))
    )
    assert not result.programmed
    assert "was not found" in result.message


async def test_burst_coalesces_and_shared_gateway_merges(
    arm: ArmServer, provider: Provider
) -> None:
    p, _ = provider
    arm.operation_seconds = 0.5
    results = await asyncio.gather(
        *(p.apply(model("a", paths=(f"/v{i}",))) for i in range(10)),
        p.apply(model("b", hostname="b.example.com")),
    )
    assert all(r.programmed for r in results)
    assert len(arm.puts()) <= 2
    listeners = _names(arm, "httpListeners")
    assert len(listeners) == 2
    paths = [
        rule["properties"]["paths"]
        for m in _props(arm)["urlPathMaps"]
        for rule in m["properties"]["pathRules"]
    ]
    assert ["/v9", "/v9/*"] in paths
    assert ["/v0", "/v0/*"] not in paths


async def test_delete_removes_only_its_children(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    await p.apply(model("a"))
    await p.apply(model("b", hostname="b.example.com"))
    await p.delete(model("a").gateway)
    listeners = _names(arm, "httpListeners")
    assert len(listeners) == 1
    assert "b.example.com" in listeners[0]
    assert _names(arm, "frontendPorts") == ["agc-port-80"]
    await p.delete(model("b").gateway)
    assert _names(arm, "httpListeners") == []
    assert _names(arm, "frontendPorts") == []


def _waf(**rules: object) -> Waf:
    return Waf(
        source="default/shop|HTTPRoute/default/gw-web",
        rules=WafRuleSet(policy="default/shop", **rules),  # type: ignore[arg-type]
    )


def _with_waf(waf: Waf | None, paths: tuple[str, ...] = ("/app", "/other")) -> LoadBalancer:
    """model() whose first rule a WebApplicationFirewallPolicy governs."""
    base = model(paths=paths)
    host = base.hosts[0]
    rules = (attrs.evolve(host.rules[0], waf=waf), *host.rules[1:])
    return attrs.evolve(base, hosts=(attrs.evolve(host, rules=rules),))


def _policies(arm: ArmServer) -> dict[str, dict]:  # type: ignore[type-arg]
    return {
        r["name"]: r
        for r in arm.resources.values()
        if r.get("type") == "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies"
    }


def _path_rule_policy(arm: ArmServer) -> str | None:
    (path_map,) = _props(arm)["urlPathMaps"]
    rule = next(
        r for r in path_map["properties"]["pathRules"] if "/app" in r["properties"]["paths"]
    )
    ref = rule["properties"].get("firewallPolicy")
    return str(ref["id"]).rsplit("/", 1)[1] if ref else None


async def test_waf_policies_are_created_associated_replaced_and_deleted(
    arm: ArmServer, provider: Provider
) -> None:
    _props(arm)["sku"] = {"name": "WAF_v2", "tier": "WAF_v2", "capacity": 2}
    p, _ = provider
    result = await p.apply(_with_waf(_waf(detection=True)))
    assert result.programmed, result.message
    (name,) = _policies(arm)
    policy = _policies(arm)[name]
    assert policy["properties"]["policySettings"]["mode"] == "Detection"
    assert policy["tags"]["agc-controller.io/application-gateway"] == APPLICATION_GATEWAY
    assert _path_rule_policy(arm) == name
    # the other path rule is not associated
    (path_map,) = _props(arm)["urlPathMaps"]
    other = next(
        r for r in path_map["properties"]["pathRules"] if "/other" in r["properties"]["paths"]
    )
    assert "firewallPolicy" not in other["properties"]

    # a changed policy is a new resource; the old one goes once nothing refers to it
    custom = WafCustomRule(
        name="scanners",
        priority=1,
        action="Block",
        conditions=(
            WafCondition(
                variables=(("RequestHeaders", "User-Agent"),),
                operator="Contains",
                values=("sqlmap",),
            ),
        ),
    )
    result = await p.apply(_with_waf(_waf(custom_rules=(custom,), disabled_rules=("942100",))))
    assert result.programmed, result.message
    (replaced,) = _policies(arm)
    assert replaced != name
    assert _path_rule_policy(arm) == replaced
    props = _policies(arm)[replaced]["properties"]
    assert props["customRules"][0]["matchConditions"][0]["negationConditon"] is False
    assert props["managedRules"]["managedRuleSets"][0]["ruleGroupOverrides"] == [
        {
            "ruleGroupName": "REQUEST-942-APPLICATION-ATTACK-SQLI",
            "rules": [{"ruleId": "942100", "state": "Disabled"}],
        }
    ]

    # detached: no association and no policy of ours left
    result = await p.apply(_with_waf(None))
    assert result.programmed, result.message
    assert _path_rule_policy(arm) is None
    assert _policies(arm) == {}


async def test_a_referenced_waf_policy_is_associated_and_never_deleted(
    arm: ArmServer, provider: Provider
) -> None:
    _props(arm)["sku"] = {"name": "WAF_v2", "tier": "WAF_v2", "capacity": 2}
    theirs = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/corporate"
    )
    arm.resources[theirs.lower()] = {
        "id": theirs,
        "name": "corporate",
        "type": "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies",
        "properties": {"managedRules": {"managedRuleSets": [{"ruleSetType": "OWASP"}]}},
    }
    p, _ = provider
    waf = Waf(source="default/corp|Gateway/default/gw", rules=None, firewall_policy_id=theirs)
    result = await p.apply(_with_waf(waf))
    assert result.programmed, result.message
    assert _path_rule_policy(arm) == "corporate"
    result = await p.apply(_with_waf(None))
    assert result.programmed, result.message
    assert "corporate" in _policies(arm)


async def test_waf_rules_on_a_standard_gateway_fail_closed(
    arm: ArmServer, provider: Provider
) -> None:
    p, _ = provider
    result = await p.apply(_with_waf(_waf()))
    assert result.programmed, result.message
    (problem,) = result.listener_problems.values()
    assert "SKU tier WAF_v2 (this one is Standard_v2)" in problem
    (path_map,) = _props(arm)["urlPathMaps"]
    app = next(r for r in path_map["properties"]["pathRules"] if "/app" in r["properties"]["paths"])
    assert app["properties"]["backendAddressPool"]["id"].endswith("-pool-empty")
    assert "firewallPolicy" not in app["properties"]
    assert _policies(arm) == {}


async def test_a_rate_limit_and_address_lists_become_a_waf_policy_of_ours(
    arm: ArmServer, provider: Provider
) -> None:
    _props(arm)["sku"] = {"name": "WAF_v2", "tier": "WAF_v2", "capacity": 2}
    base = model(paths=("/app", "/other"))
    host = base.hosts[0]
    limited = attrs.evolve(
        host.rules[0],
        rate_limit=RateLimit(bucket="b", requests=10, period_s=1, burst=10),
        auth=Auth(source="s", ip=IpAccess(deny=("203.0.113.0/24",), allow=("10.0.0.0/8",))),
    )
    p, _ = provider
    result = await p.apply(
        attrs.evolve(base, hosts=(attrs.evolve(host, rules=(limited, *host.rules[1:])),))
    )
    assert result.programmed, result.message
    (name,) = _policies(arm)
    assert _path_rule_policy(arm) == name
    props = _policies(arm)[name]["properties"]
    limit, deny, allow = props["customRules"]
    assert (limit["ruleType"], limit["rateLimitDuration"], limit["rateLimitThreshold"]) == (
        "RateLimitRule",
        "OneMin",
        600,
    )
    assert [r["priority"] for r in (limit, deny, allow)] == [1, 2, 3]
    assert deny["matchConditions"][0]["matchValues"] == ["203.0.113.0/24"]
    assert allow["matchConditions"][0]["negationConditon"] is True
    # no WebApplicationFirewallPolicy: every managed rule group is off; blocks are 403
    # (429 only where a rate limit is all the policy holds)
    overrides = props["managedRules"]["managedRuleSets"][0]["ruleGroupOverrides"]
    assert len(overrides) == 12
    assert all("rules" not in o for o in overrides)
    assert "customBlockResponseStatusCode" not in props["policySettings"]


async def test_every_call_names_the_pinned_api_version(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    assert (await p.apply(model())).programmed
    assert {r.api_version for r in arm.requests} == {API_VERSION}


async def test_missing_permissions_are_reported_and_tried_again_once_granted(
    arm: ArmServer, provider: Provider
) -> None:
    p, _ = provider
    arm.inject(
        Failure(
            "PUT",
            403,
            "LinkedAuthorizationFailed",
            "The client has permission to perform action 'Microsoft.Network/applicationGateways/"
            "write', but it does not have permission to perform action 'Microsoft.Network/"
            "virtualNetworks/subnets/join/action' on the linked scope(s).",
        )
    )
    result = await p.apply(model())
    assert (result.programmed, result.reason, result.temporary) == (False, "Pending", True)
    assert "subnets/join/action" in result.message
    # the role is granted: the same model goes through
    result = await p.apply(model())
    assert result.programmed, result.message


async def test_a_credential_that_cannot_sign_in_is_reported_and_tried_again(
    arm: ArmServer,
) -> None:
    class NoIdentity(StaticToken):
        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise ClientAuthenticationError("WorkloadIdentityCredential: no token file")

    async with AzureProvider(settings=settings_for(arm), credential=NoIdentity()) as p:
        result = await p.apply(model())
    assert (result.programmed, result.temporary) == (False, True)
    assert "signing in to Azure failed: WorkloadIdentityCredential: no token file" in result.message
    assert arm.puts() == []


async def test_an_unreadable_public_ip_leaves_the_address_unknown_not_the_gateway_invalid(
    arm: ArmServer, provider: Provider
) -> None:
    arm.inject(
        Failure(
            "GET", 403, "AuthorizationFailed", "no read access", path_contains="/publicIPAddresses/"
        )
    )
    p, _ = provider
    result = await p.apply(model())
    assert result.programmed, result.message
    assert result.addresses == ()


async def test_a_polling_error_waits_for_the_operation_before_reporting(
    arm: ArmServer, provider: Provider
) -> None:
    arm.inject(Failure("GET", 500, "InternalServerError", "boom", path_contains="/operations/"))
    p, _ = provider
    result = await p.apply(model())
    assert result.programmed, result.message
    assert _props(arm)["provisioningState"] == "Succeeded"
    assert len(arm.puts()) == 1  # the operation went on: no second PUT


async def test_a_rejected_body_is_put_again_after_a_while(arm: ArmServer) -> None:
    arm.inject(Failure("PUT", 400, "ApplicationGatewayInvalidConfiguration", "nope"))
    settings = settings_for(arm, rejection_retry_s=0.3)
    async with AzureProvider(settings=settings, credential=StaticToken()) as p:
        first = await p.apply(model())
        assert (first.programmed, first.temporary) == (False, False)
        assert "nope" in first.message
        # unchanged, at once: not PUT again
        assert not (await p.apply(model())).programmed
        assert len([r for r in arm.requests if r.method == "PUT"]) == 1
        await asyncio.sleep(0.35)
        assert (await p.apply(model())).programmed


async def test_operations_that_keep_failing_are_reported_and_retried_by_the_queue(
    arm: ArmServer,
) -> None:
    arm.inject(Failure("LRO", 0, "ApplicationGatewayKeyVaultSecretException", "no access", times=3))
    settings = settings_for(arm, retry_attempts=3)
    async with AzureProvider(settings=settings, credential=StaticToken()) as p:
        result = await p.apply(model())
    assert (result.programmed, result.temporary) == (False, True)
    assert "no access" in result.message
    assert len(arm.puts()) == 3


async def test_children_someone_else_removed_are_put_back_by_the_resync(arm: ArmServer) -> None:
    settings = settings_for(arm, resync_s=0.3)
    async with AzureProvider(settings=settings, credential=StaticToken()) as p:
        assert (await p.apply(model())).programmed
        await wait_idle(arm)
        # a Terraform run removes our routing rule (and what hangs on it only)
        props = _props(arm)
        props["requestRoutingRules"] = []
        props["urlPathMaps"] = []
        async with asyncio.timeout(10):
            while not _names(arm, "requestRoutingRules"):
                await asyncio.sleep(0.05)
        assert len(arm.puts()) == 2


async def test_one_gateway_arm_refuses_does_not_block_the_others(
    arm: ArmServer, provider: Provider
) -> None:
    arm.poisons.append(
        ("bad.example.com", "ApplicationGatewayInvalidHostName", "bad.example.com is refused")
    )
    p, _ = provider
    names = ("gw-a", "gw-b", "gw-c")
    hosts = {"gw-a": "a.example.com", "gw-b": "bad.example.com", "gw-c": "c.example.com"}
    results = dict(
        zip(
            names,
            await asyncio.gather(
                *(
                    p.apply(model(name, hostname=hosts[name], port=8000 + i))
                    for i, name in enumerate(names)
                )
            ),
            strict=True,
        )
    )
    assert results["gw-a"].programmed, results["gw-a"].message
    assert results["gw-c"].programmed, results["gw-c"].message
    refused = results["gw-b"]
    assert not refused.programmed
    assert "bad.example.com is refused" in refused.message
    listeners = _names(arm, "httpListeners")
    assert any("a.example.com" in n for n in listeners)
    assert any("c.example.com" in n for n in listeners)
    assert not any("bad.example.com" in n for n in listeners)
    # the refused children are not PUT again, unchanged, while gw-a changes
    rejected = len([r for r in arm.requests if r.method == "PUT" and r.status == 400])
    assert (await p.apply(model("gw-a", hostname="a2.example.com", port=8000))).programmed
    assert len([r for r in arm.requests if r.method == "PUT" and r.status == 400]) == rejected


def _child(collection: str, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    gateway = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.Network/applicationGateways/{APPLICATION_GATEWAY}"
    )
    return {"name": name, "id": f"{gateway}/{collection}/{name}", "properties": properties}


def _referring(certificate: str, root: str, rewrite: str) -> LoadBalancer:
    """model() on HTTPS whose listener, backend and rule name objects on the gateway."""
    base = model(port=443)
    host = base.hosts[0]
    tls = BackendTLS(sni="web.internal.example.com", ca_pem=None, gateway_roots=(root,))
    rule = attrs.evolve(
        host.rules[0],
        backends=(attrs.evolve(host.rules[0].backends[0], tls=tls),),
        rewrite_rule_set=rewrite,
    )
    frontend = Frontend(
        name="https",
        port=443,
        protocol="HTTPS",
        hostname=None,
        gateway_certificates=(certificate,),
    )
    return attrs.evolve(
        base,
        frontends=(frontend,),
        hosts=(attrs.evolve(host, listener="https", rules=(rule,)),),
    )


async def test_objects_someone_else_made_are_used_by_reference_and_kept(
    arm: ArmServer, provider: Provider
) -> None:
    theirs = {
        "sslCertificates": _child(
            "sslCertificates",
            "their-cert",
            {"keyVaultSecretId": "https://contoso.vault.azure.net/secrets/wildcard"},
        ),
        "trustedRootCertificates": _child(
            "trustedRootCertificates", "their-root", {"data": "MIIB"}
        ),
        "rewriteRuleSets": _child(
            "rewriteRuleSets",
            "their-rewrites",
            {
                "rewriteRules": [
                    {
                        "name": "no-server",
                        "ruleSequence": 100,
                        "actionSet": {
                            "responseHeaderConfigurations": [
                                {"headerName": "Server", "headerValue": ""}
                            ]
                        },
                    }
                ]
            },
        ),
    }
    for collection, child in theirs.items():
        _props(arm)[collection] = [child]
    # their certificate comes from Key Vault: the gateway reads it with its own identity
    arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)["identity"] = {
        "type": "UserAssigned",
        "userAssignedIdentities": {f"/subscriptions/{SUBSCRIPTION}/uami": {}},
    }
    p, _ = provider
    result = await p.apply(_referring("their-cert", "their-root", "their-rewrites"))
    assert result.programmed, result.message
    (listener,) = _props(arm)["httpListeners"]
    assert listener["properties"]["sslCertificate"]["id"] == theirs["sslCertificates"]["id"]
    (settings,) = [
        s for s in _props(arm)["backendHttpSettingsCollection"] if "-be-default-web" in s["name"]
    ]
    assert settings["properties"]["trustedRootCertificates"] == [
        {"id": theirs["trustedRootCertificates"]["id"]}
    ]
    (path_map,) = _props(arm)["urlPathMaps"]
    (path_rule,) = path_map["properties"]["pathRules"]
    assert path_rule["properties"]["rewriteRuleSet"]["id"] == theirs["rewriteRuleSets"]["id"]
    for collection, child in theirs.items():
        # referred to, never changed (ARM adds its own read-only fields)
        (kept,) = _props(arm)[collection]
        assert kept["name"] == child["name"], collection
        assert child["properties"].items() <= kept["properties"].items(), collection
    puts = len(arm.puts())
    # one that is not there: ARM would refuse the whole body, so the Gateway is refused
    # before any PUT and its last configuration keeps serving
    result = await p.apply(_referring("their-cert", "their-root", "gone"))
    assert not result.programmed
    assert "rewriteRuleSets gone is not on the Application Gateway" in result.message
    assert len(arm.puts()) == puts
    (path_map,) = _props(arm)["urlPathMaps"]
    (path_rule,) = path_map["properties"]["pathRules"]
    assert path_rule["properties"]["rewriteRuleSet"]["id"] == theirs["rewriteRuleSets"]["id"]


def _from_key_vault(secret_id: str) -> LoadBalancer:
    """model() on HTTPS whose listener's certificate comes from Key Vault."""
    base = model(port=443)
    frontend = Frontend(
        name="https", port=443, protocol="HTTPS", hostname=None, key_vault_certificate=secret_id
    )
    host = attrs.evolve(base.hosts[0], listener="https")
    return attrs.evolve(base, frontends=(frontend,), hosts=(host,))


async def test_a_key_vault_certificate_needs_the_gateways_user_assigned_identity(
    arm: ArmServer, provider: Provider
) -> None:
    secret = "https://contoso.vault.azure.net/secrets/wildcard"
    p, _ = provider
    # without an identity of its own the Application Gateway cannot read the vault: the
    # Gateway is refused before any PUT (ARM would refuse the whole body)
    result = await p.apply(_from_key_vault(secret))
    assert not result.programmed
    assert "user-assigned managed identity" in result.message
    assert arm.puts() == []
    identity = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/appgw-kv"
    )
    arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)["identity"] = {
        "type": "UserAssigned",
        "userAssignedIdentities": {identity: {}},
    }
    result = await p.apply(_from_key_vault(secret))
    assert result.programmed, result.message
    (certificate,) = _props(arm)["sslCertificates"]
    assert certificate["properties"]["keyVaultSecretId"] == secret
    (listener,) = _props(arm)["httpListeners"]
    assert listener["properties"]["sslCertificate"]["id"] == certificate["id"]
    # the identity is put back as it was
    put = arm.puts()[-1].body
    assert put is not None
    assert put["identity"]["userAssignedIdentities"] == {identity: {}}


async def test_a_gateway_on_the_old_core_rule_set_takes_40_listeners(
    arm: ArmServer, provider: Provider
) -> None:
    props = _props(arm)
    props["sku"] = {"name": "WAF_v2", "tier": "WAF_v2", "capacity": 2}
    props["webApplicationFirewallConfiguration"] = {
        "enabled": True,
        "firewallMode": "Prevention",
        "ruleSetType": "OWASP",
        "ruleSetVersion": "3.1",
    }
    base = model()
    many = attrs.evolve(
        base,
        hosts=tuple(attrs.evolve(base.hosts[0], hostname=f"h{i}.example.com") for i in range(41)),
    )
    p, _ = provider
    result = await p.apply(many)
    assert not result.programmed
    assert "41 listeners exceed the limit of 40" in result.message
    assert "Core Rule Set 3.1" in result.message
    assert arm.calls("PUT") == []
    # the Core Rule Set 3.2 lifts the limit to 100
    props["webApplicationFirewallConfiguration"]["ruleSetVersion"] = "3.2"
    result = await p.apply(many)
    assert result.programmed, result.message
    assert len(_props(arm)["httpListeners"]) == 41
