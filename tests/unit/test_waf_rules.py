"""WebApplicationFirewallPolicy values never become firewall configuration: each
hostile value in each string field is refused with the field named, or written
as data — the rule set still loads in ModSecurity (its own rules checker), holds
the same directives, and a literal match value matches exactly itself."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agc_controller.providers.local import waf
from agc_controller.providers.local.dynamic import router_state
from agc_controller.providers.local.state import to_json
from agc_controller.render.documents import translate_all
from agc_controller.translate import Snapshot
from agc_controller.translate.model import WafCondition, WafCustomRule, WafRuleSet
from tests.unit.test_policy_hostile_input import (
    HOSTILE,
    ROUTE,
    SETTINGS,
    _objects,
    _with_value,
)

# Debian's libmodsecurity3 ships it (hack/install-deps.sh installs the package)
RULES_CHECK = Path("/usr/lib/x86_64-linux-gnu/libexec/modsec-rules-check")
KIND = "WebApplicationFirewallPolicy"
DIRECTIVES = re.compile(r"^(# |Sec[A-Za-z]+ |Include )")


def _custom(operator: str, **condition: Any) -> dict[str, Any]:
    return {
        "customRules": [
            {
                "name": "r",
                "priority": 1,
                "action": "Block",
                "matchConditions": [
                    {
                        "matchVariables": [{"variableName": "RequestUri"}],
                        "operator": operator,
                        **condition,
                    }
                ],
            }
        ]
    }


FIELDS: list[tuple[dict[str, Any], str]] = [
    *(
        (
            _custom(op, matchValues=["VALUE"]),
            "spec.customRules[0].matchConditions[0].matchValues[0]",
        )
        for op in ("Equal", "Contains", "BeginsWith", "EndsWith", "Regex", "IPMatch", "LessThan")
    ),
    (
        {
            "customRules": [
                {
                    "name": "r",
                    "priority": 1,
                    "action": "Block",
                    "matchConditions": [
                        {
                            "matchVariables": [
                                {"variableName": "RequestHeaders", "selector": "VALUE"}
                            ],
                            "operator": "Any",
                        }
                    ],
                }
            ]
        },
        "spec.customRules[0].matchConditions[0].matchVariables[0].selector",
    ),
    (
        {
            "customRules": [
                {
                    "name": "VALUE",
                    "priority": 1,
                    "action": "Log",
                    "matchConditions": [
                        {"matchVariables": [{"variableName": "RequestUri"}], "operator": "Any"}
                    ],
                }
            ]
        },
        "spec.customRules[0].name",
    ),
    ({"managedRules": {"disabledRules": ["VALUE"]}}, "spec.managedRules.disabledRules[0]"),
    (
        {
            "managedRules": {
                "exclusions": [{"matchVariable": "RequestArgNames", "selector": "VALUE"}]
            }
        },
        "spec.managedRules.exclusions[0].selector",
    ),
    ({"blockResponse": {"body": "VALUE"}}, "spec.blockResponse.body"),
    ({"blockResponse": {"contentType": "VALUE"}}, "spec.blockResponse.contentType"),
]


def _translate(policy: dict[str, Any]) -> Any:
    translations = translate_all(Snapshot.from_objects([*_objects(), policy]), SETTINGS)
    return translations.gateways["default/gw"]


def _check_loads(text: str, tmp_path: Path) -> None:
    """ModSecurity's own checker reads `text` (the Core Rule Set left out: an empty
    directory stands in, so the check is of our lines)."""
    crs = tmp_path / "crs"
    crs.mkdir(exist_ok=True)
    (crs / "REQUEST-000-EMPTY.conf").write_text("")
    conf = tmp_path / "rules.conf"
    conf.write_text(text.replace(f"Include {waf.CRS_RULES}/", f"Include {crs}/"))
    checked = subprocess.run(
        [str(RULES_CHECK), str(conf)], check=False, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Test ok" in checked.stdout


@pytest.mark.parametrize(("spec", "field"), FIELDS, ids=lambda v: str(v)[:48])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_value_is_refused_or_written_as_data(
    spec: dict[str, Any], field: str, value: str, tmp_path: Path
) -> None:
    policy = {
        "apiVersion": "agc-controller.io/v1alpha1",
        "kind": KIND,
        "metadata": {"name": "hostile", "namespace": "default", "generation": 1},
        "spec": {"targetRefs": [ROUTE], **_with_value(spec, value)},
    }
    translation = _translate(copy.deepcopy(policy))
    (status,) = [s for s in translation.policy_statuses if s.name == "hostile"]
    accepted = status.ancestors[0].conditions[0]
    router, needs = router_state(translation.load_balancer)
    state = json.dumps(to_json(router))
    if accepted.status == "False":
        assert accepted.message.startswith(field), accepted.message
        assert not needs.waf, "a refused policy loads no rule set"
        return
    (rules,) = needs.waf
    text = waf.render(rules, tmp_path / "audit.log")
    lines = text.splitlines()
    assert all(DIRECTIVES.match(line) for line in lines), text
    assert sum(line.startswith("SecRuleEngine ") for line in lines) == 1
    _check_loads(text, tmp_path)
    if field.startswith("spec.blockResponse"):
        # the block response is the router's data, not the firewall's
        assert json.dumps(value)[1:-1] in state
    elif "matchValues" in field and '"Regex"' not in json.dumps(spec):
        # a literal is written escaped (a regular expression as it is: what it may
        # hold is checked)
        (operator,) = re.findall(r'^SecRule \S+ "([^"]*)" "id:10001,', text, re.MULTILINE)
        assert value not in operator, operator
    # the other route's rules are not inspected
    other = [h for h in translation.load_balancer.hosts if h.hostname == "other.example.com"]
    assert all(rule.waf is None for host in other for rule in host.rules)


@pytest.mark.parametrize("value", [*HOSTILE, "naïve ünïcode", "%{tx.anomaly_score}", "\\"])
@pytest.mark.parametrize("operator", ["Equal", "Contains", "BeginsWith", "EndsWith"])
def test_a_literal_value_matches_exactly_itself(operator: str, value: str) -> None:
    """The escaped regular expression (PCRE, bytes) matches the value's bytes where
    the operator says, and nothing that differs from it in a byte."""
    rules = WafRuleSet(
        policy="default/p",
        custom_rules=(
            WafCustomRule(
                name="r",
                priority=1,
                action="Block",
                conditions=(
                    WafCondition(
                        variables=(("RequestUri", None),), operator=operator, values=(value,)
                    ),
                ),
            ),
        ),
    )
    line = next(
        line for line in waf.render(rules, Path("/a.log")).splitlines() if "id:10001" in line
    )
    pattern = re.search(r'"@rx (.*?)" "id:', line)
    assert pattern is not None, line
    regex = re.compile(pattern[1])
    subject = value.encode().decode("latin-1")
    around = {
        "Equal": ("", ""),
        "Contains": ("a", "b"),
        "BeginsWith": ("", "z"),
        "EndsWith": ("z", ""),
    }
    before, after = around[operator]
    assert regex.search(before + subject + after)
    assert not regex.search(before + subject[:-1] + "\x01" + after)
