"""WebApplicationFirewallPolicy with real traffic: ModSecurity and the OWASP Core
Rule Set block attacks on the rules a policy governs and nothing else, log what
they find as JSON with the rule ids, honour Detection mode, exclusions, custom
rules and the block response, and take a policy to more targets without a reload."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import GW, Cluster
from tests.e2e.test_http_routing import HTTP, get

KIND = "WebApplicationFirewallPolicy"
XSS = "/?q=" + quote("<script>alert(1)</script>")
SQLI = "/?id=" + quote("1' OR '1'='1' --")


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> str:
    return backends.start_echo("waf")


def on_rules(*rules: str, **spec: Any) -> dict[str, Any]:
    """A policy's spec naming rules of route "r"."""
    return {
        "targetRefs": [
            {"group": GW, "kind": "HTTPRoute", "name": "r", "sectionName": rule} for rule in rules
        ],
        **spec,
    }


async def two_rules(cluster: Cluster, echo: str) -> str:
    """Route "r" with rule "protected" (/protected) and rule "open" (everything else)."""
    await cluster.service("web", [echo])
    address = await cluster.gateway("gw", HTTP)
    await cluster.prefix_route("r", "protected", "web", rest="open")
    await until_status(address, "/protected", 200)
    return address


async def status_of(address: str, path: str, **kwargs: Any) -> int:
    return (await get(address, path, **kwargs))[0]


async def until_status(address: str, path: str, want: int, **kwargs: Any) -> None:
    async with asyncio.timeout(20):
        while await status_of(address, path, **kwargs) != want:
            await asyncio.sleep(0.05)


def audit_entries(cluster: Cluster) -> list[dict[str, Any]]:
    """The data plane's firewall audit log: one JSON document per line."""
    log = Path(cluster.provider.state_dir) / f"{cluster.namespace}_gw" / "waf.log"
    return [json.loads(line)["transaction"] for line in log.read_text().splitlines() if line]


def rule_ids(entry: dict[str, Any]) -> set[str]:
    return {m["details"]["ruleId"] for m in entry.get("messages") or []}


async def test_prevention_blocks_attacks_on_the_governed_rule_only_and_logs_rule_ids(
    cluster: Cluster, echo: str
) -> None:
    address = await two_rules(cluster, echo)
    assert await status_of(address, "/protected" + XSS) == 200
    reloads = cluster.provider.reloads
    await cluster.policy(
        KIND,
        "crs",
        on_rules(
            "protected",
            blockResponse={"statusCode": 403, "body": "blocked by policy\n"},
        ),
    )
    await cluster.policy_accepted(KIND, "crs")
    await until_status(address, "/protected" + XSS, 403)

    status, headers, _ = await get(address, "/protected" + XSS)
    assert (status, headers["X-AGC-WAF"]) == (403, "blocked")
    assert await status_of(address, "/protected" + SQLI) == 403
    # a request body is inspected too
    assert (
        await status_of(
            address,
            "/protected/form",
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            data="comment=" + quote("<script>alert(document.cookie)</script>"),
        )
        == 403
    )
    assert await status_of(address, "/protected?q=hello") == 200
    # the policy's rule set loaded with one reload
    assert cluster.provider.reloads == reloads + 1
    # the other rule of the same route and Gateway is not inspected
    assert await status_of(address, "/open" + XSS) == 200
    assert await status_of(address, "/open" + SQLI) == 200

    logged = audit_entries(cluster)
    entries = [e for e in logged if "<script>alert(1)" in unquote(e["request"]["uri"])]
    assert entries, f"the blocked request is not in the audit log: {logged}"
    entry = entries[-1]
    assert entry["unique_id"].startswith(f"{cluster.namespace}/crs/")
    assert entry["producer"]["secrules_engine"] == "Enabled"
    assert {"941100", "949110"} <= rule_ids(entry)
    assert entry["request"]["uri"].startswith("/protected/?q=")

    # the same policy on one more rule: data only, no reload
    reloads = cluster.provider.reloads
    await cluster.policy(KIND, "crs", on_rules("protected", "open"))
    await until_status(address, "/open" + XSS, 403)
    assert await status_of(address, "/open?q=hello") == 200
    assert cluster.provider.reloads == reloads

    # deleted: the routes are open again, still without a reload (NGINX keeps the rule
    # set loaded until a reload happens for another reason)
    await cluster.delete_policy(KIND, "crs")
    await until_status(address, "/protected" + XSS, 200)
    assert await status_of(address, "/open" + XSS) == 200
    assert cluster.provider.reloads == reloads


async def test_detection_mode_logs_and_lets_requests_through(cluster: Cluster, echo: str) -> None:
    address = await two_rules(cluster, echo)
    await cluster.policy(KIND, "watch", on_rules("protected", mode="Detection"))
    await cluster.policy_accepted(KIND, "watch")

    async with asyncio.timeout(20):
        while True:
            assert await status_of(address, "/protected" + SQLI) == 200
            logged = [e for e in audit_entries(cluster) if "OR" in unquote(e["request"]["uri"])]
            if logged:
                break
            await asyncio.sleep(0.1)
    entry = logged[-1]
    assert entry["producer"]["secrules_engine"] == "DetectionOnly"
    assert entry["unique_id"].startswith(f"{cluster.namespace}/watch/")
    assert any(i.startswith("942") for i in rule_ids(entry)), rule_ids(entry)


async def test_exclusions_and_custom_rules(cluster: Cluster, echo: str) -> None:
    address = await two_rules(cluster, echo)
    # a wiki's "content" argument holds markup by design: the managed rules skip it
    await cluster.policy(
        KIND,
        "tuned",
        on_rules(
            "protected",
            managedRules={
                "exclusions": [{"matchVariable": "RequestArgNames", "selector": "content"}]
            },
            customRules=[
                {
                    "name": "trusted-probe",
                    "priority": 1,
                    "action": "Allow",
                    "matchConditions": [
                        {
                            "matchVariables": [
                                {"variableName": "RequestHeaders", "selector": "X-Probe"}
                            ],
                            "operator": "Equal",
                            "matchValues": ["synthetic-check"],
                        }
                    ],
                },
                {
                    "name": "scanners",
                    "priority": 2,
                    "action": "Block",
                    "matchConditions": [
                        {
                            "matchVariables": [
                                {"variableName": "RequestHeaders", "selector": "User-Agent"}
                            ],
                            "operator": "Contains",
                            # the second value is data: it neither ends the rule nor
                            # turns the engine off (values are compared after the
                            # transforms: lower case)
                            "matchValues": ["sqlmap", 'x"; secruleengine off'],
                            "transforms": ["Lowercase"],
                        }
                    ],
                },
            ],
            blockResponse={
                "statusCode": 406,
                "body": '{"error": "blocked"}',
                "contentType": "application/json",
            },
        ),
    )
    await cluster.policy_accepted(KIND, "tuned")
    await until_status(address, "/protected" + XSS, 406)

    status, headers, body = await get(address, "/protected" + XSS)
    assert (status, body) == (406, {"error": "blocked"})
    assert headers["Content-Type"] == "application/json"
    markup = quote("<script>alert(1)</script>")
    assert await status_of(address, f"/protected?content={markup}") == 200
    assert await status_of(address, f"/protected?other={markup}") == 406
    assert await status_of(address, "/protected", headers={"User-Agent": "SQLMap/1.7"}) == 406
    assert (
        await status_of(address, "/protected", headers={"User-Agent": 'X"; SecRuleEngine Off'})
        == 406
    )
    assert await status_of(address, "/protected", headers={"User-Agent": "curl/8"}) == 200
    # Allow skips the rest of the inspection, managed rules included
    assert (
        await status_of(address, "/protected" + XSS, headers={"X-Probe": "synthetic-check"}) == 200
    )
    assert await status_of(address, "/protected" + XSS, headers={"X-Probe": "other"}) == 406
