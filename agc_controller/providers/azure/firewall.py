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
from agc_controller.translate.model import Waf, WafCustomRule, WafExclusion, WafRuleSet

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


def owned_body(waf: Waf, *, location: str, application_gateway: str) -> dict[str, object]:
    """The WAF policy resource of a WebApplicationFirewallPolicy with rules of its own."""
    rules = waf.rules
    assert rules is not None  # a policy naming a WAF policy of Azure's owns none
    settings: dict[str, object] = {
        "state": "Enabled",
        "mode": "Detection" if rules.detection else "Prevention",
        "requestBodyCheck": True,
        "maxRequestBodySizeInKb": 128,
        "fileUploadLimitInMb": 100,
    }
    if waf.block_status != 403 or waf.block_body:
        settings["customBlockResponseStatusCode"] = waf.block_status
    if waf.block_body:
        settings["customBlockResponseBody"] = base64.b64encode(waf.block_body.encode()).decode()
    managed: dict[str, object] = {"managedRuleSets": [_managed_rule_set(rules)]}
    if rules.exclusions:
        managed["exclusions"] = [_exclusion(e) for e in rules.exclusions]
    properties: dict[str, object] = {"policySettings": settings, "managedRules": managed}
    if rules.custom_rules:
        properties["customRules"] = [_custom_rule(r) for r in rules.custom_rules]
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


def _custom_rule(rule: WafCustomRule) -> dict[str, object]:
    return {
        "name": rule.name,
        "priority": rule.priority,
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
