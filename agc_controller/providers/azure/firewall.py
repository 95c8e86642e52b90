"""WebApplicationFirewallPolicy → Application Gateway WAF policies (pure).

A policy that names a WAF policy of Application Gateway's
(`webApplicationFirewall.id`, AGC's field) is associated as it is. A policy
with rules of its own becomes a WAF policy resource we own, in the
Application Gateway's resource group: its fields follow Application Gateway's
(custom rules map one to one), the managed rules are OWASP CRS 3.2. Owned
policies are named by a digest of their content, so a changed policy is a new
resource (associations switch to it in one PUT of the Application Gateway;
sync.py creates owned policies before that PUT and deletes the ones no longer
associated after it), and tagged with the Application Gateway they serve.

Associations: a rule's WAF policy goes on its path rule; the rule a host's
path map falls back to (its catch-all, or the only rule) has no path rule, so
its policy goes on the host's listener — and Application Gateway then applies
it to every other path of that listener that has none of its own, which the
listener's status says. Rules need an Application Gateway of SKU tier WAF_v2:
on another, a rule a policy governs fails closed (the empty pool: 502) rather
than serving uninspected.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from agc_controller.providers.azure import naming
from agc_controller.translate.model import (
    IpAccess,
    RateLimit,
    Waf,
    WafCustomRule,
    WafExclusion,
    WafRuleSet,
)

# the managed rule set owned policies run (CRS 3.3, which the local data plane runs,
# is not offered on Application Gateway; 3.2 is the closest)
RULE_SET = ("OWASP", "3.2")
# the CRS 3.2 rule groups, by the first three digits of their rules' ids
RULE_GROUPS: Mapping[str, str] = {
    "911": "REQUEST-911-METHOD-ENFORCEMENT",
    "913": "REQUEST-913-SCANNER-DETECTION",
    "920": "REQUEST-920-PROTOCOL-ENFORCEMENT",
    "921": "REQUEST-921-PROTOCOL-ATTACK",
    "930": "REQUEST-930-APPLICATION-ATTACK-LFI",
    "931": "REQUEST-931-APPLICATION-ATTACK-RFI",
    "932": "REQUEST-932-APPLICATION-ATTACK-RCE",
    "933": "REQUEST-933-APPLICATION-ATTACK-PHP",
    "941": "REQUEST-941-APPLICATION-ATTACK-XSS",
    "942": "REQUEST-942-APPLICATION-ATTACK-SQLI",
    "943": "REQUEST-943-APPLICATION-ATTACK-SESSION-FIXATION",
    "944": "REQUEST-944-APPLICATION-ATTACK-JAVA",
}
# the status codes a custom block response may have on Application Gateway
BLOCK_STATUS_CODES = frozenset({200, 403, 405, 406, 429, *range(990, 1000)})
# string match values per condition (IP ranges may be more)
MATCH_VALUES_MAX = 10
TYPE = "ApplicationGatewayWebApplicationFirewallPolicies"
# the tags of an owned policy: whose it is, and which Application Gateway it serves
MANAGED_BY = ("managed-by", "agc-controller")
SERVES = "agc-controller.io/application-gateway"
_MAX_NAME = 128


def serves(tags: Mapping[str, str], application_gateway: str) -> bool:
    """Whether a WAF policy with `tags` is one we made for `application_gateway`."""
    return tags.get(MANAGED_BY[0]) == MANAGED_BY[1] and tags.get(SERVES) == application_gateway


def referenced_names(body: Mapping[str, Any]) -> frozenset[str]:
    """The names of the WAF policies an Application Gateway body associates anywhere
    (the gateway, listeners, path rules)."""
    props = body.get("properties") or {}
    refs = [props.get("firewallPolicy")]
    refs += [
        (li.get("properties") or {}).get("firewallPolicy")
        for li in props.get("httpListeners") or []
    ]
    refs += [
        (rule.get("properties") or {}).get("firewallPolicy")
        for path_map in props.get("urlPathMaps") or []
        for rule in (path_map.get("properties") or {}).get("pathRules") or []
    ]
    return frozenset(
        naming.last_segment(str(ref["id"]))
        for ref in refs
        if isinstance(ref, dict) and ref.get("id")
    )


def rule_group(rule_id: str) -> str | None:
    return RULE_GROUPS.get(rule_id[:3])


def owned_name(application_gateway: str, body: Mapping[str, object]) -> str:
    """An owned policy's name: its Application Gateway's and a digest of its content."""
    digest = naming.digest(json.dumps(body, sort_keys=True), 16)
    return f"{application_gateway[: _MAX_NAME - 21]}-waf-{digest}"


def policy_id(gateway_id: str, name: str) -> str:
    """The resource ID of a WAF policy `name` in the Application Gateway's resource group."""
    group = gateway_id.rsplit("/providers/", 1)[0]
    return f"{group}/providers/Microsoft.Network/{TYPE}/{name}"


def owned_body(
    *,
    waf: Waf | None,
    limit: RateLimit | None,
    ip: IpAccess | None,
    location: str,
    application_gateway: str,
) -> dict[str, object]:
    """The WAF policy of ours for a rule: its WebApplicationFirewallPolicy's rules (a
    policy with rules of its own), its RateLimitPolicy and its AuthPolicy's address
    lists, as custom rules in that order (each address list before any rule of the
    WebApplicationFirewallPolicy: an Allow there must not skip it). Without a
    WebApplicationFirewallPolicy the managed rules are all disabled, and a rate
    limit alone blocks with 429."""
    rules = waf.rules if waf is not None else None
    assert waf is None or rules is not None  # a policy naming a WAF policy of Azure's owns none
    settings: dict[str, object] = {
        "state": "Enabled",
        "mode": "Detection" if rules is not None and rules.detection else "Prevention",
        "requestBodyCheck": True,
        "maxRequestBodySizeInKb": 128,
        "fileUploadLimitInMb": 100,
    }
    status, body = (waf.block_status, waf.block_body) if waf is not None else (403, "")
    if waf is None and ip is None and limit is not None:
        status = 429
    if status != 403 or body:
        settings["customBlockResponseStatusCode"] = status
    if body:
        settings["customBlockResponseBody"] = base64.b64encode(body.encode()).decode()
    if rules is not None:
        managed: dict[str, object] = {"managedRuleSets": [_managed_rule_set(rules)]}
        if rules.exclusions:
            managed["exclusions"] = [_exclusion(e) for e in rules.exclusions]
    else:
        managed = {
            "managedRuleSets": [
                {
                    "ruleSetType": RULE_SET[0],
                    "ruleSetVersion": RULE_SET[1],
                    # a group overridden with no rules named: all its rules disabled
                    "ruleGroupOverrides": [{"ruleGroupName": g} for g in RULE_GROUPS.values()],
                }
            ]
        }
    custom = [
        *([_rate_limit_rule(limit)] if limit is not None else []),
        *(_address_rules(ip) if ip is not None else []),
        *(_custom_rule(r) for r in (rules.custom_rules if rules is not None else ())),
    ]
    # priorities by position: ours first, then the policy's in its own order
    for priority, rule in enumerate(custom, start=1):
        rule["priority"] = priority
    properties: dict[str, object] = {"policySettings": settings, "managedRules": managed}
    if custom:
        properties["customRules"] = custom
    return {
        "location": location,
        "tags": dict([MANAGED_BY, (SERVES, application_gateway)]),
        "properties": properties,
    }


def _managed_rule_set(rules: WafRuleSet) -> dict[str, object]:
    rule_set: dict[str, object] = {"ruleSetType": RULE_SET[0], "ruleSetVersion": RULE_SET[1]}
    overrides = _by_group(rules.disabled_rules)
    if overrides:
        rule_set["ruleGroupOverrides"] = [
            {"ruleGroupName": group, "rules": [{"ruleId": i, "state": "Disabled"} for i in ids]}
            for group, ids in overrides.items()
        ]
    return rule_set


def _by_group(rule_ids: tuple[str, ...]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for rule_id in rule_ids:
        group = rule_group(rule_id)
        # translation refuses ids of no CRS 3.2 group on this provider
        assert group is not None, rule_id
        groups.setdefault(group, []).append(rule_id)
    return dict(sorted(groups.items()))


def _exclusion(exclusion: WafExclusion) -> dict[str, object]:
    out: dict[str, object] = {
        "matchVariable": exclusion.variable,
        "selectorMatchOperator": "Equals" if exclusion.selector is not None else "EqualsAny",
        "selector": exclusion.selector if exclusion.selector is not None else "*",
    }
    if exclusion.rule_ids:
        out["exclusionManagedRuleSets"] = [
            {
                "ruleSetType": RULE_SET[0],
                "ruleSetVersion": RULE_SET[1],
                "ruleGroups": [
                    {"ruleGroupName": group, "rules": [{"ruleId": i} for i in ids]}
                    for group, ids in _by_group(exclusion.rule_ids).items()
                ],
            }
        ]
    return out


# a condition every request meets: its address is not the broadcast address
_EVERY_REQUEST = {
    "matchVariables": [{"variableName": "RemoteAddr"}],
    "operator": "IPMatch",
    "negationConditon": True,
    "matchValues": ["255.255.255.255/32"],
}


def _rate_limit_rule(limit: RateLimit) -> dict[str, object]:
    """A RateLimitPolicy as a RateLimitRule: per client address, over a sliding minute
    (a rate per second is the same average rate over the minute)."""
    # the capabilities refuse other units, and a concurrency limit (a policy without a
    # rate has one): Application Gateway cannot count requests in flight
    assert limit.concurrency is None, limit
    assert limit.requests is not None, limit
    assert limit.period_s in (1, 60), limit
    return {
        "name": "agcRateLimit",
        "priority": 0,
        "state": "Enabled",
        "ruleType": "RateLimitRule",
        "rateLimitDuration": "OneMin",
        "rateLimitThreshold": limit.requests * (60 // limit.period_s),
        "groupByUserSession": [{"groupByVariables": [{"variableName": "ClientAddr"}]}],
        "action": "Block",
        "matchConditions": [_EVERY_REQUEST],
    }


def _address_rules(ip: IpAccess) -> list[dict[str, object]]:
    """An AuthPolicy's address lists: block what `deny` holds, then what `allow` does not."""
    out: list[dict[str, object]] = []
    for name, cidrs, negate in (("agcDeny", ip.deny, False), ("agcAllow", ip.allow, True)):
        if cidrs:
            out.append(
                {
                    "name": name,
                    "priority": 0,
                    "state": "Enabled",
                    "ruleType": "MatchRule",
                    "action": "Block",
                    "matchConditions": [
                        {
                            "matchVariables": [{"variableName": "RemoteAddr"}],
                            "operator": "IPMatch",
                            "negationConditon": negate,
                            "matchValues": list(cidrs),
                        }
                    ],
                }
            )
    return out


def _custom_rule(rule: WafCustomRule) -> dict[str, object]:
    return {
        "name": rule.name,
        "priority": 0,
        "state": "Enabled",
        "ruleType": "MatchRule",
        "action": rule.action,
        "matchConditions": [
            {
                "matchVariables": [
                    {"variableName": name, **({"selector": s} if s is not None else {})}
                    for name, s in condition.variables
                ],
                "operator": condition.operator,
                # sic: ARM's own spelling
                "negationConditon": condition.negate,
                "matchValues": list(condition.values),
                **({"transforms": list(condition.transforms)} if condition.transforms else {}),
            }
            for condition in rule.conditions
        ],
    }
