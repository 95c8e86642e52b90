"""A WebApplicationFirewallPolicy's rule set as ModSecurity configuration (pure).

The text is ModSecurity's rule language, which NGINX's ModSecurity module loads
with the static configuration (static.py renders one inspection location per
rule set; lua/agc/waf.lua sends requests there). A value a user wrote reaches
the text only as data:

- literal match values (Equal, Contains, BeginsWith, EndsWith) become regular
  expressions with every byte but letters and digits written as `\\xHH`, so
  none of them can end the quoted operator, start a macro (`%{`) or mean
  anything to the regular expression;
- regular expressions (Regex) are written inside a group of their own, and one
  holding a double quote, `%{`, a line break or other control characters is
  refused (translate/graph/waf.py says so first, naming the field);
- names (selectors), rule ids, numbers, addresses and rule names must match
  strict patterns, checked again here; anything else raises UnsafeWafValue.

Blocking works as the Core Rule Set's anomaly scoring does: rules add to a
score, and rule 949110 denies the request once it reaches the policy's
threshold. Custom rules run first, in priority order: Block denies at once,
Allow skips the rest of the inspection, Log only logs.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path

from agc_controller.core.errors import PermanentError
from agc_controller.translate.graph.waf import RULE_ID, RULE_NAME, SELECTOR, regex_problem
from agc_controller.translate.model import WafCondition, WafCustomRule, WafExclusion, WafRuleSet

# Debian's modsecurity-crs
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
# the CRS version the settings below are written for (3.3: crs_setup_version 330+)
_CRS_SETUP_VERSION = 334
# our own rule ids: custom rule with priority p is 10000 + p; below the Core Rule
# Set's 900000-999999 and outside the ranges it reserves for local rules' examples
_CUSTOM_RULE_ID_BASE = 10000

_VARIABLES = {
    "RemoteAddr": "REMOTE_ADDR",
    "RequestMethod": "REQUEST_METHOD",
    "QueryString": "QUERY_STRING",
    "RequestUri": "REQUEST_URI",
    "RequestBody": "REQUEST_BODY",
    "PostArgs": "ARGS_POST",
    "RequestHeaders": "REQUEST_HEADERS",
    "RequestCookies": "REQUEST_COOKIES",
}
_EXCLUDED = {
    "RequestArgNames": "ARGS",
    "RequestHeaderNames": "REQUEST_HEADERS",
    "RequestCookieNames": "REQUEST_COOKIES",
}
_TRANSFORMS = {
    "Lowercase": "lowercase",
    "Uppercase": "uppercase",
    "Trim": "trim",
    "UrlDecode": "urlDecodeUni",
    "UrlEncode": "urlEncode",
    "RemoveNulls": "removeNulls",
    "HtmlEntityDecode": "htmlEntityDecode",
}
_NUMBERS = {
    "LessThan": "lt",
    "LessThanOrEqual": "le",
    "GreaterThan": "gt",
    "GreaterThanOrEqual": "ge",
}
# literal operators as regular expressions around the (escaped) alternatives
_LITERALS = {
    "Equal": ("^(?:", ")$"),
    "Contains": ("(?:", ")"),
    "BeginsWith": ("^(?:", ")"),
    "EndsWith": ("(?:", ")$"),
}
_ACTIONS = {
    "Block": "deny,status:403,log,auditlog",
    "Allow": "allow,nolog",
    "Log": "pass,log,auditlog",
}
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/\-]+$")
_NUMBER = re.compile(r"^-?[0-9]{1,18}$")


class UnsafeWafValue(PermanentError, ValueError):
    """A value that must not be written into the firewall's rule language."""


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A check that lets a value through if `pattern` matches it, else raises."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise UnsafeWafValue(f"refusing {what} {value[:64]!r}")
        return value

    return check


_selector = _matching(SELECTOR, "selector")
_rule_id = _matching(RULE_ID, "rule id")
_path = _matching(_SAFE_PATH, "path")
_rule_name = _matching(RULE_NAME, "custom rule name")


@functools.lru_cache(maxsize=1024)
def rule_set_id(rules: WafRuleSet) -> str:
    """The rule set's id: a digest of its text, so an unchanged policy keeps its
    inspection location (and file), and a changed one, or one this renderer
    writes differently, gets new ones."""
    text = render(rules, Path("/audit.log"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def render(rules: WafRuleSet, audit_log: Path, crs_rules: Path = CRS_RULES) -> str:
    """The ModSecurity configuration of one rule set, writing its audit log to
    `audit_log`."""
    engine = "DetectionOnly" if rules.detection else "On"
    lines = [
        f"# agc-controller: WebApplicationFirewallPolicy {_path(rules.policy)}. Generated.",
        f"SecRuleEngine {engine}",
        # request bodies are inspected (up to 13 MB; more is refused), responses not
        "SecRequestBodyAccess On",
        "SecRequestBodyLimit 13107200",
        "SecRequestBodyNoFilesLimit 131072",
        "SecRequestBodyLimitAction Reject",
        "SecResponseBodyAccess Off",
        "SecArgumentsLimit 1000",
        # a pathological expression gives up instead of holding the worker
        "SecPcreMatchLimit 1000",
        "SecPcreMatchLimitRecursion 1000",
        'SecRule REQUEST_HEADERS:Content-Type "@rx ^(?:application(?:/soap\\+|/)|text/)xml" '
        '"id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"',
        'SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" '
        '"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"',
        'SecRule REQBODY_ERROR "!@eq 0" '
        '"id:200002,phase:2,t:none,log,auditlog,deny,status:400,'
        "msg:'Failed to parse request body'\"",
        # what matched, as one JSON document per request; no headers or bodies
        # (credentials), only the request line and the rules (parts A, H)
        "SecAuditEngine RelevantOnly",
        "SecAuditLogFormat JSON",
        "SecAuditLogType Serial",
        "SecAuditLogParts AHZ",
        f"SecAuditLog {_path(str(audit_log))}",
        # the Core Rule Set's setup (crs-setup.conf), as settings of our own
        'SecDefaultAction "phase:1,log,auditlog,pass"',
        'SecDefaultAction "phase:2,log,auditlog,pass"',
        f'SecAction "id:900000,phase:1,nolog,pass,t:none,'
        f'setvar:tx.paranoia_level={_int(rules.paranoia_level, 1, 4)}"',
        f'SecAction "id:900110,phase:1,nolog,pass,t:none,'
        f"setvar:tx.inbound_anomaly_score_threshold={_int(rules.anomaly_threshold, 1, 10000)},"
        'setvar:tx.outbound_anomaly_score_threshold=4"',
        f'SecAction "id:900990,phase:1,nolog,pass,t:none,'
        f'setvar:tx.crs_setup_version={_CRS_SETUP_VERSION}"',
    ]
    for rule in rules.custom_rules:
        lines += _custom_rule(rule)
    lines.append(f"Include {_path(str(crs_rules))}/REQUEST-*.conf")
    lines += [f"SecRuleRemoveById {_rule_id(i)}" for i in rules.disabled_rules]
    for exclusion in rules.exclusions:
        lines += _exclusion(exclusion)
    return "\n".join(lines) + "\n"


def _custom_rule(rule: WafCustomRule) -> list[str]:
    rule_id = _CUSTOM_RULE_ID_BASE + _int(rule.priority, 1, 100)
    head = (
        f"id:{rule_id},phase:2,{_ACTIONS[rule.action]},"
        f"msg:'Custom rule {_rule_name(rule.name)}',tag:'agc-controller.io/custom-rule'"
    )
    lines = []
    last = len(rule.conditions) - 1
    for i, condition in enumerate(rule.conditions):
        actions = ",".join(
            [
                *([head] if i == 0 else []),
                "t:none",
                *(f"t:{_TRANSFORMS[t]}" for t in condition.transforms),
                *(["chain"] if i < last else []),
            ]
        )
        lines.append(f'SecRule {_variables(condition)} "{_operator(condition)}" "{actions}"')
    return lines


def _variables(condition: WafCondition) -> str:
    names = []
    for name, selector in condition.variables:
        variable = _VARIABLES[name]
        names.append(variable if selector is None else f"{variable}:{_selector(selector)}")
    return "|".join(names)


def _operator(condition: WafCondition) -> str:
    negate = "!" if condition.negate else ""
    op = condition.operator
    values = condition.values
    if op == "Any":
        return f"{negate}@unconditionalMatch"
    if op == "IPMatch":
        return f"{negate}@ipMatch {','.join(map(_network, values))}"
    if op in _NUMBERS:
        (value,) = values
        if not _NUMBER.match(value):
            raise UnsafeWafValue(f"refusing number {value[:64]!r}")
        return f"{negate}@{_NUMBERS[op]} {value}"
    if op == "Regex":
        for value in values:
            if (problem := regex_problem(value)) is not None or "\n" in value:
                raise UnsafeWafValue(f"refusing regular expression {value[:64]!r}: {problem}")
        return f"{negate}@rx " + "|".join(f"(?:{v})" for v in values)
    before, after = _LITERALS[op]
    return f"{negate}@rx {before}{'|'.join(_literal(v) for v in values)}{after}"


def _network(value: str) -> str:
    """An address or CIDR as @ipMatch reads it: a single address bare (its parser
    refuses an IPv6 /128)."""
    net = ipaddress.ip_network(value, strict=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _literal(value: str) -> str:
    """`value` as a regular expression matching exactly its UTF-8 bytes: letters and
    digits as they are, every other byte as \\xHH."""
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\x{b:02x}" for b in value.encode()
    )


def _exclusion(exclusion: WafExclusion) -> list[str]:
    variable = _EXCLUDED[exclusion.variable]
    if exclusion.selector is not None:
        variable = f"{variable}:{_selector(exclusion.selector)}"
    if not exclusion.rule_ids:
        return [f'SecRuleUpdateTargetByTag "OWASP_CRS" "!{variable}"']
    return [f'SecRuleUpdateTargetById {_rule_id(i)} "!{variable}"' for i in exclusion.rule_ids]


def _int(value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise UnsafeWafValue(f"refusing {value!r}: not an integer from {low} to {high}")
    return value
