"""URL path maps and request routing rules, with priorities from precedence.

One request routing rule per listener. Its rules come in Gateway API
precedence order (translation sorted them); Application Gateway matches a path
map by exact path, then longest prefix, so the order is kept only if no rule
is hidden behind an earlier, broader one. Such hidden rules can never match
under Gateway API either (an earlier rule of a more specific route hostname
takes every request they would), so they are left out, as are paths an
earlier rule already claims. A catch-all (`PathPrefix /`) becomes the path
map's default (or a Basic rule when it is the only rule); without one the
default is the Gateway's empty pool.

Priorities: the rule's order key is (hostname specificity, port, frontend,
Gateway); merge.py numbers every Gateway's rules on one Application Gateway
in that order, because v2 evaluates listeners by rule priority and an exact
host name must be tried before a wildcard, a wildcard before a basic listener.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.backend_settings import add_empty_settings
from agc_controller.providers.azure.children import Collector, Json, RuleProblem
from agc_controller.providers.azure.frontends import FrontendIp
from agc_controller.providers.azure.pools import add_empty_pool
from agc_controller.translate.hostnames import specificity
from agc_controller.translate.model import Host, PathMatch, Rule

# characters a path pattern cannot hold literally (wildcards, query, server variables)
_NOT_IN_PATTERN = re.compile(r"[*?#{}]")
# placeholder until merge.py assigns the real priority
UNASSIGNED = 0


def patterns(path: PathMatch) -> list[str] | None:
    """The path patterns of one match; None for the catch-all."""
    if path.type == "RegularExpression":
        raise RuleProblem("RegularExpression paths are not supported by the azure provider")
    if _NOT_IN_PATTERN.search(path.value):
        raise RuleProblem(f"path {path.value[:64]!r} has characters a path pattern cannot hold")
    if path.type == "Exact":
        return [path.value]
    prefix = path.value.rstrip("/")
    if not prefix:
        return None
    return [prefix, f"{prefix}/*"]


def _covered(path: PathMatch, earlier: Sequence[PathMatch]) -> bool:
    """Whether an earlier match takes every request `path` would."""
    value = path.value.rstrip("/") or "/"
    for e in earlier:
        e_value = e.value.rstrip("/") or "/"
        if e.type == "PathPrefix" and (e_value in ("/", value) or value.startswith(e_value + "/")):
            return True
        if e.type == "Exact" and path.type == "Exact" and e.value == path.value:
            return True
    return False


def add_routing(
    c: Collector,
    *,
    host: Host,
    ip: FrontendIp,
    listener: Json,
    slug: str,
    action: Callable[[Rule], Json],
) -> None:
    earlier: list[PathMatch] = []
    claimed: set[str] = set()
    path_rules: list[Json] = []
    default: Json | None = None
    for rule in host.rules:
        if _covered(rule.match.path, earlier):
            continue
        try:
            found = patterns(rule.match.path)
            rule_action = action(rule)
        except RuleProblem as e:
            c.problem(
                host.listener,
                f"{rule.route.kind} {rule.route.namespace}/{rule.route.name} rule "
                f"{rule.rule_index} is not programmed on host {host.hostname}: {e}",
            )
            continue
        earlier.append(rule.match.path)
        if found is None:
            default = rule_action
            break
        fresh = [p for p in found if p not in claimed]
        claimed.update(fresh)
        if fresh:
            name = f"{rule.route.namespace}-{rule.route.name}-{rule.rule_index}-{rule.match_index}"
            path_rules.append(
                {"name": _path_rule_name(name), "properties": {"paths": fresh, **rule_action}}
            )
    props: Json = {
        "ruleType": "Basic",
        "priority": UNASSIGNED,
        "httpListener": listener,
    }
    if default is None:
        default = {
            "backendAddressPool": add_empty_pool(c),
            "backendHttpSettings": add_empty_settings(c),
        }
    # a path map's default (and a Basic rule) has no firewallPolicy: the listener's
    # applies, to the default and to every path rule without one of its own
    firewall = default.pop("firewallPolicy", None)
    if firewall is not None:
        c.set_property(listener, "firewallPolicy", firewall)
        uncovered = [r["name"] for r in path_rules if "firewallPolicy" not in r["properties"]]
        if uncovered:
            c.problem(
                host.listener,
                f"host {host.hostname}: the WAF policy of the rule its other requests go to "
                f"is on the listener, and Application Gateway applies it to path rules "
                f"{', '.join(uncovered)} too, though no WebApplicationFirewallPolicy governs them",
            )
    if path_rules:
        defaults = {f"default{k[0].upper()}{k[1:]}": v for k, v in default.items()}
        props["ruleType"] = "PathBasedRouting"
        props["urlPathMap"] = c.add(
            "urlPathMaps",
            naming.child_name(c.gateway, "map", slug),
            {**defaults, "pathRules": path_rules},
        )
    else:
        props.update(default)
    name = naming.child_name(c.gateway, "rule", slug)
    c.add("requestRoutingRules", name, props)
    c.rule_order[name] = (
        specificity(host.hostname),
        host.port,
        ip.label,
        c.gateway.namespace,
        c.gateway.name,
    )


def _path_rule_name(readable: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", readable).strip("-.")
    if len(slug) > naming.MAX_NAME:
        slug = f"{slug[: naming.MAX_NAME - 9]}-{naming.digest(readable)}"
    return slug
