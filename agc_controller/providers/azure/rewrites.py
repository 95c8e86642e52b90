"""Rewrite rule sets: header modifiers and URLRewrite ReplaceFullPath.

Application Gateway sets a header to a value, and removes it when the value is
empty; `{...}` in a value is a server variable, so a user value containing a
brace would read gateway internals and is refused instead. Header `add` and
ReplacePrefixMatch are refused earlier, by the capabilities (translate).
"""

from __future__ import annotations

import json

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json, RuleProblem
from agc_controller.translate.model import HeaderModifier, Rule

SEQUENCE = 100
# headers Application Gateway does not let a rewrite set, or remove
_NOT_SET = frozenset({"connection", "upgrade"})
_NOT_REMOVED = frozenset({"host"})
# header configurations per rewrite rule set
HEADERS_MAX = 40


def add_rewrite_set(c: Collector, rule: Rule) -> Json | None:
    action: Json = {}
    if rule.request_headers is not None:
        action["requestHeaderConfigurations"] = _headers(rule.request_headers)
    if rule.response_headers is not None:
        action["responseHeaderConfigurations"] = _headers(rule.response_headers)
    rewrite = rule.rewrite
    if rewrite is not None and rewrite.path_type is not None:
        if rewrite.path_type != "ReplaceFullPath" or rewrite.path_value is None:
            raise RuleProblem(
                "URLRewrite ReplacePrefixMatch is not supported by the azure provider"
            )
        action["urlConfiguration"] = {"modifiedPath": rewrite.path_value, "reroute": False}
    if not action:
        return None
    headers = len(action.get("requestHeaderConfigurations", [])) + len(
        action.get("responseHeaderConfigurations", [])
    )
    if headers > HEADERS_MAX:
        raise RuleProblem(
            f"{headers} header modifications: an Application Gateway rewrite takes at most "
            f"{HEADERS_MAX}"
        )
    rules = [
        {"name": "gateway-api", "ruleSequence": SEQUENCE, "conditions": [], "actionSet": action}
    ]
    readable = (
        f"{rule.route.namespace}-{rule.route.name}-{rule.rule_index}-"
        f"{naming.digest(json.dumps(rules, sort_keys=True))}"
    )
    return c.add(
        "rewriteRuleSets", naming.child_name(c.gateway, "rw", readable), {"rewriteRules": rules}
    )


def _headers(modifier: HeaderModifier) -> list[Json]:
    if modifier.add:
        raise RuleProblem("header modifier add is not supported by the azure provider")
    out = []
    for name, _ in modifier.set:
        if name.lower() in _NOT_SET:
            raise RuleProblem(f"header {name} cannot be rewritten on Application Gateway")
    for name in modifier.remove:
        if name.lower() in _NOT_SET | _NOT_REMOVED:
            raise RuleProblem(f"header {name} cannot be removed on Application Gateway")
    for name, value in modifier.set:
        if "{" in value or "}" in value:
            raise RuleProblem(
                f"header {name}: a value with braces would be read as an Application Gateway "
                "server variable"
            )
        out.append({"headerName": name, "headerValue": value})
    out.extend({"headerName": name, "headerValue": ""} for name in modifier.remove)
    return out
