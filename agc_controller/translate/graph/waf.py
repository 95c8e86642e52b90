"""WebApplicationFirewallPolicy (agc-controller.io/v1alpha1): its spec, parsed and checked.

    spec:
      targetRefs: [...]               # a Gateway, listener, HTTPRoute or rule (graph/policies.py)
      mode: Prevention                # Prevention (block) | Detection (log only)
      managedRules:                   # the OWASP Core Rule Set
        paranoiaLevel: 1              # 1-4
        anomalyThreshold: 5           # inbound anomaly score that blocks
        disabledRules: ["920350"]
        exclusions:                   # request parts the managed rules skip
        - matchVariable: RequestArgNames   # | RequestHeaderNames | RequestCookieNames
          selectorMatchOperator: Equals    # | EqualsAny (every one; no selector)
          selector: password
          ruleIds: ["942100"]         # none: every managed rule
      customRules:                    # evaluated first, by priority
      - name: BlockScanners
        priority: 10                  # 1-100, unique
        action: Block                 # Block | Allow (skip the managed rules) | Log
        matchConditions:              # all must hold
        - matchVariables: [{variableName: RequestHeaders, selector: User-Agent}]
          operator: Contains
          matchValues: [sqlmap]       # any
          negationCondition: false
          transforms: [Lowercase]
      blockResponse: {statusCode: 403, body: "Blocked", contentType: text/plain}
      webApplicationFirewall:         # or: an Application Gateway WAF policy (azure)
        id: /subscriptions/.../ApplicationGatewayWebApplicationFirewallPolicies/name

Field names and values follow Application Gateway's WAF policies, so a policy
reads the same on both providers. Every value is data to the firewall: the
renderer (providers/local/waf.py) writes literal values as escaped bytes, and
refuses what it cannot write as data; these checks say first, naming the field.
An invalid policy governs nothing (its status says why): a WAF typo must not
take every route it guards offline.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Literal, cast

import attrs

from agc_controller.translate.graph.policies import (
    WAF_TARGETS,
    AttachedPolicies,
    PolicyNode,
    Target,
    build_attached,
    governing_name,
)
from agc_controller.translate.model import (
    Waf,
    WafCondition,
    WafCustomRule,
    WafExclusion,
    WafRuleSet,
)
from agc_controller.translate.snapshot import Obj, Snapshot
from agc_controller.translate.validate import int_in

KIND = "WebApplicationFirewallPolicy"

CUSTOM_RULES_MAX = 100
CONDITIONS_MAX = 10
VARIABLES_MAX = 10
VALUES_MAX = 100
VALUE_MAX = 256
RULE_IDS_MAX = 1000
EXCLUSIONS_MAX = 100
BODY_MAX = 32768

# variable name -> whether a selector is allowed
VARIABLES = {
    "RemoteAddr": False,
    "RequestMethod": False,
    "QueryString": False,
    "RequestUri": False,
    "RequestBody": False,
    "PostArgs": True,
    "RequestHeaders": True,
    "RequestCookies": True,
}
STRING_OPERATORS = frozenset({"Equal", "Contains", "BeginsWith", "EndsWith", "Regex"})
NUMBER_OPERATORS = frozenset({"LessThan", "LessThanOrEqual", "GreaterThan", "GreaterThanOrEqual"})
OPERATORS = STRING_OPERATORS | NUMBER_OPERATORS | {"Any", "IPMatch"}
TRANSFORMS = frozenset(
    {"Lowercase", "Uppercase", "Trim", "UrlDecode", "UrlEncode", "RemoveNulls", "HtmlEntityDecode"}
)
EXCLUSION_VARIABLES = frozenset({"RequestArgNames", "RequestHeaderNames", "RequestCookieNames"})

# what the firewall's rule language can name without quoting: header, cookie and
# argument names made of these characters
SELECTOR = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,256}$")
RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
RULE_ID = re.compile(r"^[1-9][0-9]{0,8}$")
_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9!#$&^_.+\-]+/[A-Za-z0-9!#$&^_.+\-]+(; ?charset=[A-Za-z0-9_\-]+)?$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIREWALL_POLICY_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
    r"ApplicationGatewayWebApplicationFirewallPolicies/[^/]+$",
    re.IGNORECASE,
)


def build_wafs(
    snapshot: Snapshot, provider_problem: Callable[[Waf], str | None]
) -> AttachedPolicies[Waf]:
    """Every WebApplicationFirewallPolicy of the snapshot; each value's `source` is
    left empty (rules name it after the target it governs through)."""
    return build_attached(
        KIND,
        snapshot.waf_policies.values(),
        parse_waf,
        targets=WAF_TARGETS,
        provider_problem=provider_problem,
    )


def in_force(policy: PolicyNode[Waf], target: Target) -> Waf:
    """The policy `policy` as it governs through `target`."""
    assert policy.value is not None  # only valid policies govern
    return attrs.evolve(policy.value, source=governing_name(policy, target))


def parse_waf(obj: Obj) -> tuple[Waf | None, str | None]:
    spec = obj.get("spec") or {}
    meta = obj["metadata"]
    block = spec.get("blockResponse") or {}
    status = block.get("statusCode", 403)
    if not int_in(status, 200, 599):
        return None, "spec.blockResponse.statusCode must be an integer from 200 to 599"
    body = block.get("body", "")
    if not isinstance(body, str) or len(body.encode()) > BODY_MAX:
        return None, f"spec.blockResponse.body must be text of at most {BODY_MAX} bytes"
    content_type = block.get("contentType", "text/plain; charset=utf-8")
    if not isinstance(content_type, str) or not _CONTENT_TYPE.match(content_type):
        return None, "spec.blockResponse.contentType must be a media type (type/subtype)"
    mode = spec.get("mode", "Prevention")
    if mode not in ("Prevention", "Detection"):
        return None, f"spec.mode {str(mode)[:32]!r} is not one of Prevention, Detection"
    waf = Waf(
        source="",
        rules=None,
        block_status=status,
        block_body=body,
        block_content_type=content_type,
    )
    reference = spec.get("webApplicationFirewall")
    if reference is not None:
        described = [k for k in ("mode", "managedRules", "customRules") if k in spec]
        if described:
            return None, (
                f"spec.webApplicationFirewall and spec.{described[0]} are exclusive: a "
                "referenced WAF policy has its own mode and rules"
            )
        policy_id = reference.get("id") if isinstance(reference, dict) else None
        if not isinstance(policy_id, str) or not _FIREWALL_POLICY_ID.match(policy_id):
            return None, (
                "spec.webApplicationFirewall.id must be the resource id of an Application "
                "Gateway WAF policy (/subscriptions/…/providers/Microsoft.Network/"
                "ApplicationGatewayWebApplicationFirewallPolicies/<name>)"
            )
        return attrs.evolve(waf, firewall_policy_id=policy_id), None
    rules, problem = _rule_set(spec, f"{meta['namespace']}/{meta['name']}")
    if rules is None:
        return None, problem
    return attrs.evolve(waf, rules=rules), None


def _rule_set(spec: Obj, policy: str) -> tuple[WafRuleSet | None, str | None]:
    managed = spec.get("managedRules") or {}
    level = managed.get("paranoiaLevel", 1)
    if not int_in(level, 1, 4):
        return None, "spec.managedRules.paranoiaLevel must be an integer from 1 to 4"
    threshold = managed.get("anomalyThreshold", 5)
    if not int_in(threshold, 1, 10000):
        return None, "spec.managedRules.anomalyThreshold must be an integer from 1 to 10000"
    disabled = managed.get("disabledRules") or []
    if problem := _rule_ids(disabled, "spec.managedRules.disabledRules"):
        return None, problem
    exclusions = []
    raw_exclusions = managed.get("exclusions") or []
    if len(raw_exclusions) > EXCLUSIONS_MAX:
        return None, f"spec.managedRules.exclusions holds more than {EXCLUSIONS_MAX} entries"
    for i, raw in enumerate(raw_exclusions):
        exclusion, problem = _exclusion(raw, f"spec.managedRules.exclusions[{i}]")
        if exclusion is None:
            return None, problem
        exclusions.append(exclusion)
    raw_rules = spec.get("customRules") or []
    if len(raw_rules) > CUSTOM_RULES_MAX:
        return None, f"spec.customRules holds more than {CUSTOM_RULES_MAX} rules"
    custom: list[WafCustomRule] = []
    for i, raw in enumerate(raw_rules):
        rule, problem = _custom_rule(raw, f"spec.customRules[{i}]")
        if rule is None:
            return None, problem
        for j, other in enumerate(custom):
            if other.priority == rule.priority:
                return None, f"spec.customRules[{i}].priority {rule.priority} is also rule {j}'s"
            if other.name == rule.name:
                return None, f"spec.customRules[{i}].name {rule.name!r} is also rule {j}'s"
        custom.append(rule)
    return (
        WafRuleSet(
            policy=policy,
            detection=spec.get("mode") == "Detection",
            paranoia_level=level,
            anomaly_threshold=threshold,
            disabled_rules=tuple(sorted(set(disabled), key=int)),
            exclusions=tuple(exclusions),
            custom_rules=tuple(sorted(custom, key=lambda r: r.priority)),
        ),
        None,
    )


def _rule_ids(ids: Any, field: str) -> str | None:
    if not isinstance(ids, list) or len(ids) > RULE_IDS_MAX:
        return f"{field} must be a list of at most {RULE_IDS_MAX} rule ids"
    for i, rule_id in enumerate(ids):
        if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
            return f'{field}[{i}] must be a rule id (digits, e.g. "942100")'
    return None


def _exclusion(raw: Any, field: str) -> tuple[WafExclusion | None, str | None]:
    if not isinstance(raw, dict):
        return None, f"{field} must be an object"
    variable = raw.get("matchVariable")
    if variable not in EXCLUSION_VARIABLES:
        return None, (
            f"{field}.matchVariable {str(variable)[:32]!r} is not one of "
            + ", ".join(sorted(EXCLUSION_VARIABLES))
        )
    operator = raw.get("selectorMatchOperator", "Equals")
    selector = raw.get("selector")
    if operator == "EqualsAny":
        if selector is not None:
            return None, f"{field}.selector is not allowed with selectorMatchOperator EqualsAny"
    elif operator == "Equals":
        if not isinstance(selector, str) or not SELECTOR.match(selector):
            return None, _selector_problem(f"{field}.selector")
    else:
        return (
            None,
            f"{field}.selectorMatchOperator {str(operator)[:32]!r} is not one of Equals, EqualsAny",
        )
    ids = raw.get("ruleIds") or []
    if problem := _rule_ids(ids, f"{field}.ruleIds"):
        return None, problem
    return (
        WafExclusion(
            variable=cast(
                Literal["RequestArgNames", "RequestHeaderNames", "RequestCookieNames"], variable
            ),
            selector=selector,
            rule_ids=tuple(sorted(set(ids), key=int)),
        ),
        None,
    )


def _selector_problem(field: str) -> str:
    return (
        f"{field} must be 1-256 letters, digits or the characters _ . - [ ] "
        "(a header, cookie or argument name)"
    )


def _custom_rule(raw: Any, field: str) -> tuple[WafCustomRule | None, str | None]:
    if not isinstance(raw, dict):
        return None, f"{field} must be an object"
    name = raw.get("name")
    if not isinstance(name, str) or not RULE_NAME.match(name):
        return None, (
            f"{field}.name must be 1-128 letters, digits, _ or -, starting with a letter or digit"
        )
    priority = raw.get("priority")
    if not int_in(priority, 1, 100):
        return None, f"{field}.priority must be an integer from 1 to 100"
    action = raw.get("action")
    if action not in ("Block", "Allow", "Log"):
        return None, f"{field}.action {str(action)[:32]!r} is not one of Allow, Block, Log"
    raw_conditions = raw.get("matchConditions") or []
    if not isinstance(raw_conditions, list) or not 1 <= len(raw_conditions) <= CONDITIONS_MAX:
        return None, f"{field}.matchConditions must hold 1 to {CONDITIONS_MAX} conditions"
    conditions = []
    for j, raw_condition in enumerate(raw_conditions):
        condition, problem = _condition(raw_condition, f"{field}.matchConditions[{j}]")
        if condition is None:
            return None, problem
        conditions.append(condition)
    return (
        WafCustomRule(
            name=name,
            priority=priority,
            action=cast(Literal["Block", "Allow", "Log"], action),
            conditions=tuple(conditions),
        ),
        None,
    )


def _condition(raw: Any, field: str) -> tuple[WafCondition | None, str | None]:
    if not isinstance(raw, dict):
        return None, f"{field} must be an object"
    raw_variables = raw.get("matchVariables") or []
    if not isinstance(raw_variables, list) or not 1 <= len(raw_variables) <= VARIABLES_MAX:
        return None, f"{field}.matchVariables must hold 1 to {VARIABLES_MAX} variables"
    variables: list[tuple[str, str | None]] = []
    for k, variable in enumerate(raw_variables):
        name = variable.get("variableName") if isinstance(variable, dict) else None
        if name not in VARIABLES:
            return None, (
                f"{field}.matchVariables[{k}].variableName {str(name)[:32]!r} is not one of "
                + ", ".join(sorted(VARIABLES))
            )
        selector = variable.get("selector")
        if selector is not None:
            if not VARIABLES[name]:
                return None, f"{field}.matchVariables[{k}].selector is not allowed with {name}"
            if not isinstance(selector, str) or not SELECTOR.match(selector):
                return None, _selector_problem(f"{field}.matchVariables[{k}].selector")
        variables.append((name, selector))
    operator = raw.get("operator")
    if operator not in OPERATORS:
        return None, f"{field}.operator {str(operator)[:32]!r} is not one of " + ", ".join(
            sorted(OPERATORS)
        )
    values = raw.get("matchValues") or []
    if not isinstance(values, list) or len(values) > VALUES_MAX:
        return None, f"{field}.matchValues must be a list of at most {VALUES_MAX} values"
    if problem := _values_problem(operator, values, f"{field}.matchValues"):
        return None, problem
    if operator == "IPMatch":
        values = [str(ipaddress.ip_network(v, strict=False)) for v in values]
    transforms = raw.get("transforms") or []
    if not isinstance(transforms, list) or any(t not in TRANSFORMS for t in transforms):
        return None, f"{field}.transforms must be among " + ", ".join(sorted(TRANSFORMS))
    negate = raw.get("negationCondition", False)
    if not isinstance(negate, bool):
        return None, f"{field}.negationCondition must be true or false"
    return (
        WafCondition(
            variables=tuple(variables),
            operator=operator,
            values=tuple(values),
            negate=negate,
            transforms=tuple(dict.fromkeys(transforms)),
        ),
        None,
    )


def _values_problem(operator: str, values: list[Any], field: str) -> str | None:
    if operator == "Any":
        return f"{field} is not allowed with operator Any" if values else None
    if not values:
        return f"{field} must hold at least one value for operator {operator}"
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value or len(value) > VALUE_MAX:
            return f"{field}[{i}] must be text of 1 to {VALUE_MAX} characters"
        if _CONTROL.search(value):
            return f"{field}[{i}] contains control characters"
        if operator == "IPMatch":
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                return f"{field}[{i}] {value[:64]!r} is not an IP address or CIDR"
        elif operator in NUMBER_OPERATORS:
            if len(values) > 1:
                return f"{field} must hold exactly one number for operator {operator}"
            if not re.fullmatch(r"-?[0-9]{1,18}", value):
                return f"{field}[{i}] must be an integer for operator {operator}"
        elif operator == "Regex" and (problem := regex_problem(value)):
            return f"{field}[{i}] {problem}"
    return None


def regex_problem(value: str) -> str | None:
    """Why `value` cannot be a custom rule's regular expression; None if it can. The
    firewall expands %{...} in its operators and ends them at a double quote, so a
    value holds neither (\\x25 and \\x22 match them)."""
    if '"' in value:
        return "must not contain a double quote (write \\x22)"
    if "%{" in value:
        return "must not contain %{ (write \\x25{)"
    try:
        re.compile(value)
    except re.error as e:
        return f"is not a valid regular expression: {e}"
    return None
