"""Rewrite rule sets: header modifiers and URLRewrite paths.

Application Gateway sets a header to a value, and removes it when the value is
empty; `{...}` in a value is a server variable, so a user value containing a
brace would read gateway internals and is refused instead. One rewrite rule set
per route rule, of rewrite rules applied in sequence:

- the unconditional one: `set`, `remove`, and a ReplaceFullPath path;
- per header `add` (append to the header, or set it when it is absent), two
  rules on the header's server variable (`http_req_<name>` / `http_resp_<name>`):
  present (`.+`) → `{<variable>},<value>`; absent (negated) → `<value>`;
- ReplacePrefixMatch, two rules on `var_uri_path`: the path that is the matched
  prefix itself becomes the replacement; a longer one keeps what follows the
  prefix (the captured `{var_uri_path_1}`). Application Gateway compares paths
  without regard to case, as its path maps do.

Headers Application Gateway does not let a rewrite touch (setting `Connection`
or `Upgrade`, removing `Host`) and over 40 header configurations in one set
are refused per rule. ReplacePrefixMatch in a redirect stays refused by the
capabilities (a redirect's target URL takes no server variables).
"""

from __future__ import annotations

import json
import re

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json, RuleProblem
from agc_controller.translate.model import HeaderModifier, Rule

SEQUENCE = 100
# headers Application Gateway does not let a rewrite set, or remove
_NOT_SET = frozenset({"connection", "upgrade"})
_NOT_REMOVED = frozenset({"host"})
# header configurations per rewrite rule set
HEADERS_MAX = 40
# what a header's server variable name (http_req_<name>) may hold
_VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def add_rewrite_set(c: Collector, rule: Rule) -> Json | None:
    rules: list[Json] = []
    action: Json = {}
    conditional: list[Json] = []
    for key, modifier, variable in (
        ("requestHeaderConfigurations", rule.request_headers, "http_req_"),
        ("responseHeaderConfigurations", rule.response_headers, "http_resp_"),
    ):
        if modifier is not None:
            configurations = _headers(modifier)
            if configurations:
                action[key] = configurations
            conditional += _added(key, modifier, variable)
    rewrite = rule.rewrite
    if rewrite is not None and rewrite.path_type is not None and rewrite.path_value is not None:
        if rewrite.path_type == "ReplaceFullPath":
            action["urlConfiguration"] = {"modifiedPath": rewrite.path_value, "reroute": False}
        else:
            conditional += _prefix_rules(rule.match.path.value, rewrite.path_value)
    if action:
        rules.append({"name": "gateway-api", "conditions": [], "actionSet": action})
    rules += conditional
    if not rules:
        return None
    headers = sum(
        len(r["actionSet"].get(key, []))
        for r in rules
        for key in ("requestHeaderConfigurations", "responseHeaderConfigurations")
    )
    if headers > HEADERS_MAX:
        raise RuleProblem(
            f"{headers} header modifications: an Application Gateway rewrite takes at most "
            f"{HEADERS_MAX}"
        )
    for sequence, entry in enumerate(rules, start=SEQUENCE):
        entry["ruleSequence"] = sequence
    readable = (
        f"{rule.route.namespace}-{rule.route.name}-{rule.rule_index}-"
        f"{naming.digest(json.dumps(rules, sort_keys=True))}"
    )
    return c.add(
        "rewriteRuleSets", naming.child_name(c.gateway, "rw", readable), {"rewriteRules": rules}
    )


def _headers(modifier: HeaderModifier) -> list[Json]:
    for name, _ in (*modifier.set, *modifier.add):
        if name.lower() in _NOT_SET:
            raise RuleProblem(f"header {name} cannot be rewritten on Application Gateway")
    for name in modifier.remove:
        if name.lower() in _NOT_SET | _NOT_REMOVED:
            raise RuleProblem(f"header {name} cannot be removed on Application Gateway")
    out = [{"headerName": name, "headerValue": _value(name, value)} for name, value in modifier.set]
    out.extend({"headerName": name, "headerValue": ""} for name in modifier.remove)
    return out


def _added(key: str, modifier: HeaderModifier, variable: str) -> list[Json]:
    """The two rules of each added header: appended to when present, set when absent."""
    out = []
    for i, (name, value) in enumerate(modifier.add):
        if not _VARIABLE_NAME.match(name):
            raise RuleProblem(
                f"header {name}: adding to it needs its server variable, whose name takes "
                "only letters, digits, - and _"
            )
        server_variable = f"{variable}{name}"
        for negate, header_value in (
            (False, f"{{{server_variable}}},{_value(name, value)}"),
            (True, _value(name, value)),
        ):
            out.append(
                {
                    "name": f"add-{'absent' if negate else 'present'}-{key[:3]}-{i}",
                    "conditions": [
                        {
                            "variable": server_variable,
                            "pattern": ".+",
                            "ignoreCase": True,
                            "negate": negate,
                        }
                    ],
                    "actionSet": {key: [{"headerName": name, "headerValue": header_value}]},
                }
            )
    return out


def _prefix_rules(prefix: str, replacement: str) -> list[Json]:
    """ReplacePrefixMatch: the prefix alone, and the prefix followed by more path."""
    matched = re.escape(prefix.rstrip("/"))  # "" for "/"
    kept = replacement.rstrip("/")
    return [
        {
            "name": "prefix-exact",
            "conditions": [_path_condition(f"^{matched}/?$")],
            "actionSet": {"urlConfiguration": {"modifiedPath": replacement, "reroute": False}},
        },
        {
            "name": "prefix-rest",
            "conditions": [_path_condition(f"^{matched}(/.+)$")],
            "actionSet": {
                "urlConfiguration": {
                    "modifiedPath": f"{kept}{{var_uri_path_1}}",
                    "reroute": False,
                }
            },
        },
    ]


def _path_condition(pattern: str) -> Json:
    return {"variable": "var_uri_path", "pattern": pattern, "ignoreCase": True, "negate": False}


def _value(name: str, value: str) -> str:
    if "{" in value or "}" in value:
        raise RuleProblem(
            f"header {name}: a value with braces would be read as an Application Gateway "
            "server variable"
        )
    return value
