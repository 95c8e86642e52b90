"""ALB model → the Application Gateway children of one Gateway (pure).

Order: frontends (which frontend IP configurations, which ports) → per host and
frontend IP: listener (+ certificate, SSL profile) → per reachable rule: the
action (redirect, or pool + backend settings + probe, + rewrite set) → the
path map and request routing rule. Nothing here reads the network or the
clock; merge.py puts the result onto the live Application Gateway.

A rule the Application Gateway cannot express is left out and reported on its
Gateway listener; translation's capabilities already refuse most of them on
the route, so reaching one here means a model translated for another provider
or a case only the host reveals (a redirect keeping a wildcard host).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from agc_controller.providers.azure import firewall, naming
from agc_controller.providers.azure.backend_settings import add_empty_settings, add_settings
from agc_controller.providers.azure.children import Collector, GatewayChildren, Json, RuleProblem
from agc_controller.providers.azure.frontends import FrontendIp, FrontendMode, port_name, select
from agc_controller.providers.azure.listeners import add_listener, listener_slug
from agc_controller.providers.azure.pools import add_empty_pool, add_pool
from agc_controller.providers.azure.redirects import ListenerFor, add_redirect
from agc_controller.providers.azure.rewrites import add_rewrite_set
from agc_controller.providers.azure.routing import add_routing
from agc_controller.translate.model import Frontend, Host, LoadBalancer, Rule

# the SKU tier whose gateways run WAF policies
WAF_TIER = "WAF_v2"


def build_children(
    model: LoadBalancer,
    *,
    gateway_id: str,
    frontend_ips: Mapping[str, FrontendIp],
    frontend_mode: FrontendMode,
    ports: Mapping[int, str],
    location: str = "",
    sku_tier: str = "",
) -> GatewayChildren:
    """The children `model` needs on the Application Gateway `gateway_id`.

    `frontend_ips` are the Application Gateway's frontend IP configurations by
    label, `ports` its existing frontend ports by number (see frontends.py),
    `location` and `sku_tier` its own (WAF policies: firewall.py).
    """
    c = Collector(
        gateway=model.gateway,
        gateway_id=gateway_id,
        endpoints=model.endpoints,
        health_checks=model.health_checks,
        load_balancing=model.load_balancing,
        location=location,
        sku_tier=sku_tier,
    )
    ips, problem = select(frontend_ips, frontend_mode)
    if problem is not None:
        return GatewayChildren(
            gateway=model.gateway, collections={}, rule_order={}, problem=problem
        )
    if any(
        b.tls is not None and b.tls.client_certificate is not None
        for host in model.hosts
        for rule in host.rules
        for b in rule.backends
    ):
        return GatewayChildren(
            gateway=model.gateway,
            collections={},
            rule_order={},
            problem="spec.tls.backend.clientCertificateRef is not supported by the azure provider",
        )
    frontends = {f.name: f for f in model.frontends}
    for host in model.hosts:
        frontend = frontends[host.listener]
        scheme = "https" if frontend.protocol == "HTTPS" else "http"
        for ip in ips:
            listener = add_listener(
                c, host=host, frontend=frontend, ip=ip, port=port_name(ports, host.port)
            )
            add_routing(
                c,
                host=host,
                ip=ip,
                listener=listener,
                slug=listener_slug(ip, host),
                action=functools.partial(
                    _action,
                    c,
                    host=host,
                    scheme=scheme,
                    listener_for=_listener_finder(c, model, frontends, ip),
                ),
            )
    return c.frozen()


def _listener_finder(
    c: Collector, model: LoadBalancer, frontends: Mapping[str, Frontend], ip: FrontendIp
) -> ListenerFor:
    """Finds the listener of `model` on frontend `ip` serving a host name (as written:
    wildcards too) on a port in a scheme, if there is one (a redirect's target)."""

    def find(hostname: str, port: int, scheme: str) -> Json | None:
        protocol = "HTTPS" if scheme == "https" else "HTTP"
        for host in model.hosts:
            if (
                host.hostname == hostname
                and host.port == port
                and frontends[host.listener].protocol == protocol
            ):
                name = naming.child_name(c.gateway, "lis", listener_slug(ip, host))
                return c.ref("httpListeners", name)
        return None

    return find


def _action(
    c: Collector, rule: Rule, *, host: Host, scheme: str, listener_for: ListenerFor
) -> Json:
    _refuse_unsupported(rule)
    if rule.rewrite_rule_set is not None and (
        rule.redirect
        or rule.request_headers
        or rule.response_headers
        or (rule.rewrite and rule.rewrite.path_type)
    ):
        raise RuleProblem(
            f"rewrite rule set {rule.rewrite_rule_set} with a redirect, header modifiers or a "
            "path rewrite: an Application Gateway path rule takes one rewrite rule set, and a "
            "redirect none"
        )
    if rule.redirect is not None:
        return {"redirectConfiguration": add_redirect(c, rule, host, scheme, listener_for)}
    action: Json
    backends = [b for b in rule.backends if b.weight > 0]
    # a rule governed by an AuthPolicy Application Gateway cannot check (refused on
    # the policy), or by policies it cannot program here, fails closed on the empty
    # pool (502)
    firewall, refused = _firewall_policy(c, rule, host)
    if backends and backends[0].valid and not refused:
        action = {
            "backendAddressPool": add_pool(c, backends[0]),
            "backendHttpSettings": add_settings(c, rule, backends[0]),
        }
    else:
        action = {
            "backendAddressPool": add_empty_pool(c),
            "backendHttpSettings": add_empty_settings(c),
        }
    rewrite = (
        c.external_ref("rewriteRuleSets", rule.rewrite_rule_set)
        if rule.rewrite_rule_set is not None
        else add_rewrite_set(c, rule)
    )
    if rewrite is not None:
        action["rewriteRuleSet"] = rewrite
    if firewall is not None:
        action["firewallPolicy"] = firewall
    return action


def _firewall_policy(c: Collector, rule: Rule, host: Host) -> tuple[Json | None, bool]:
    """The WAF policy a rule needs — its WebApplicationFirewallPolicy's, or one of
    ours holding that policy's rules, its rate limit and its address lists — as a
    reference (None: it needs none), and whether the rule must fail closed: an
    AuthPolicy Application Gateway cannot check, or policies it cannot program here."""
    waf, limit, auth = rule.waf, rule.rate_limit, rule.auth
    if auth is not None and (auth.refuse or auth.ip is None):
        return None, True
    ip = auth.ip if auth is not None else None
    if waf is None and limit is None and ip is None:
        return None, False
    what = (
        f"{rule.route.kind} {rule.route.namespace}/{rule.route.name} rule {rule.rule_index} is "
        f"governed by {_policy_kinds(rule)}"
    )
    if c.sku_tier != WAF_TIER:
        c.problem(
            host.listener,
            f"{what}, which need an Application Gateway of SKU tier {WAF_TIER} (this one is "
            f"{c.sku_tier or 'unknown'}): its requests are answered 502 until then",
        )
        return None, True
    if waf is not None and waf.firewall_policy_id is not None:
        if limit is not None or ip is not None:
            c.problem(
                host.listener,
                f"{what}: a WAF policy named by id cannot take the rate limit or address lists "
                "as well; its requests are answered 502",
            )
            return None, True
        return {"id": waf.firewall_policy_id}, False
    application_gateway = naming.last_segment(c.gateway_id)
    body = firewall.owned_body(
        waf=waf,
        limit=limit,
        ip=ip,
        location=c.location,
        application_gateway=application_gateway,
    )
    name = firewall.owned_name(application_gateway, body)
    c.firewall_policies[name] = body
    return {"id": firewall.policy_id(c.gateway_id, name)}, False


def _policy_kinds(rule: Rule) -> str:
    kinds = [
        kind
        for kind, present in (
            ("a WebApplicationFirewallPolicy", rule.waf is not None),
            ("a RateLimitPolicy", rule.rate_limit is not None),
            ("an AuthPolicy's address lists", rule.auth is not None),
        )
        if present
    ]
    return " and ".join(kinds)


def _refuse_unsupported(rule: Rule) -> None:
    """What the azure capabilities refuse in translation, checked again on the model."""
    match = rule.match
    for present, what in (
        (match.method is not None, "method matches"),
        (bool(match.headers), "header matches"),
        (bool(match.query_params), "query parameter matches"),
        (bool(rule.mirrors), "RequestMirror"),
        (rule.cors is not None, "CORS"),
        (rule.retry is not None, "retry"),
        (len([b for b in rule.backends if b.weight > 0]) > 1, "weighted backends"),
        (
            any(b.request_headers or b.response_headers for b in rule.backends),
            "backendRef filters",
        ),
        (rule.grpc, "GRPCRoute"),
        (
            rule.session_persistence is not None and rule.session_persistence.type == "Header",
            "header session persistence",
        ),
    ):
        if present:
            raise RuleProblem(f"{what} are not supported by the azure provider")
