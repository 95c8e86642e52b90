"""What a provider can program, so translation reports the rest on the route.

A data plane that cannot express a feature must never serve a rule without it
(a route that asked for a header match would suddenly match every request).
Translation therefore checks each HTTPRoute/GRPCRoute rule against the
provider's `Capabilities` and drops the rule with a message naming the field
(`spec.rules[0].matches[1].headers is not supported by the azure provider`);
a route left without rules is not accepted (see graph.routes).

Invariant: `Capabilities()` (every flag on, but the behaviours `mesh` and
`probes_from_readiness`) accepts everything translation itself accepts.
BackendTLSPolicy subjectAltNames are the one check that is not per rule: a
provider without them gets the policy refused (graph.backendtlspolicy), which
fails the requests to its backends rather than checking less than asked. The
check reads the raw rule, not the parsed one, so messages keep the exact index
of the offending filter or match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from agc_controller.core.resources import (
    APPGW_GROUP,
    APPGW_REWRITE_RULE_SET,
    HTTP_ROUTE_FILTER,
    POLICY_GROUP,
)
from agc_controller.translate.model import (
    Auth,
    BackendHealth,
    LoadBalancing,
    RateLimit,
    Waf,
    WafRuleSet,
)

_ALL_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@attrs.frozen(kw_only=True)
class Capabilities:
    # the provider's name, as messages show it
    provider: str = "local"
    header_matches: bool = True
    query_param_matches: bool = True
    method_matches: bool = True
    regex_paths: bool = True
    # traffic split over more than one backendRef with a non-zero weight
    weighted_backends: bool = True
    # filters on a backendRef (header modifiers per backend)
    backend_filters: bool = True
    mirrors: bool = True
    cors: bool = True
    # HTTPRoute backends spoken to in HTTP/2 without TLS (appProtocol kubernetes.io/h2c)
    h2c_backends: bool = True
    # our HTTPRouteFilter: a path rewrite by a regular expression, a body size limit
    route_filters: bool = True
    retries: bool = True
    # the most retries a rule may ask for (retry.attempts); None: no limit
    retry_attempts_max: int | None = None
    # header modifier `add` (append to an existing header); `set`/`remove` are assumed
    header_add: bool = True
    # Services in Istio-injected namespaces are reached over the mesh's mTLS with the
    # gateway's workload identity (docs/mesh.md): an opt-in setting, not a default
    mesh: bool = False
    redirect_status_codes: frozenset[int] = _ALL_REDIRECT_CODES
    redirect_prefix_replace: bool = True
    rewrite_prefix_replace: bool = True
    # sessionPersistence types (Cookie, Header)
    session_persistence_types: frozenset[str] = frozenset({"Cookie", "Header"})
    session_persistence_timeouts: bool = True
    # BackendTLSPolicy validation.subjectAltNames: check the backend certificate
    # against these names instead of the SNI hostname
    backend_tls_subject_alt_names: bool = True
    # RateLimitPolicy (graph/ratelimit.py): the units' periods in seconds, keys other
    # than the client's address (a header, a JWT claim), a burst other than the rate,
    # a limit of requests in flight (spec.concurrency)
    rate_limits: bool = True
    rate_limit_periods: frozenset[int] = frozenset({1, 60, 3600})
    rate_limit_request_keys: bool = True
    rate_limit_burst: bool = True
    rate_limit_concurrency: bool = True
    # AuthPolicy (graph/auth.py): any of it; ways of signing in (not address lists
    # alone); trusted proxies
    auth: bool = True
    auth_credentials: bool = True
    auth_trusted_proxies: bool = True
    # HealthCheckPolicy (graph/healthcheck.py): probe protocols, healthyThreshold
    # other than 1, and intervals / timeouts that are not whole seconds
    health_check_protocols: frozenset[str] = frozenset({"HTTP", "HTTPS", "TCP", "GRPC"})
    health_check_healthy_threshold: bool = True
    # the most probe failures in a row a HealthCheckPolicy may ask for (None: the CRD's)
    health_check_unhealthy_threshold_max: int | None = None
    health_check_subsecond: bool = True
    # HealthCheckPolicy passive ejection
    passive_health_checks: bool = True
    # a backend no HealthCheckPolicy governs is probed as its pods' readinessProbe (else
    # livenessProbe) httpGet says (graph/readiness.py), as AGIC does: for a load
    # balancer that marks endpoints down by its own probe. Off where the data plane
    # follows the EndpointSlices' readiness, which kubelet's run of the probe decides
    probes_from_readiness: bool = False
    # BackendLoadBalancingPolicy (graph/loadbalancing.py): strategies, slow start, and
    # the circuit breaker's maxRequests
    load_balancing_strategies: frozenset[str] = frozenset(
        {"RoundRobin", "LeastRequest", "Random", "ConsistentHash"}
    )
    slow_start: bool = True
    circuit_breaker: bool = True
    # connectionDraining: a timeout in other than whole seconds (Application Gateway
    # counts drainTimeoutInSec)
    connection_draining_subsecond: bool = True
    # connectionDraining as written: requests in flight to an endpoint that left are
    # waited for up to the timeout, and not at all when disabled. Without it they
    # always finish (the local data plane): the policy is accepted, and its
    # Accepted message says so (`load_balancing_note`)
    connection_draining_cutoff: bool = True
    # WebApplicationFirewallPolicy (graph/waf.py): rules described in the policy, and
    # a reference to a WAF policy of Application Gateway's (webApplicationFirewall.id)
    waf_rules: bool = True
    waf_policy_reference: bool = True
    # the Core Rule Set's paranoia level and anomaly threshold other than 1 and 5
    waf_crs_tuning: bool = True
    # references to objects already on an Application Gateway (graph/appgw.py):
    # certificates, trusted root certificates, rewrite rule sets
    application_gateway_children: bool = True
    # a listener's certificate from Azure Key Vault (its tls.options, graph/appgw.py)
    key_vault_certificates: bool = True
    # the status codes a block response may have (None: 200-599)
    waf_block_status_codes: frozenset[int] | None = None
    # string match values per custom rule condition (None: the CRD's 100)
    waf_match_values_max: int | None = None
    # the managed rules' groups, by the first three digits of their ids (None: any)
    waf_rule_groups: frozenset[str] | None = None

    def rate_limit_problem(self, limit: RateLimit) -> str | None:
        """The first part of a parsed RateLimitPolicy the provider cannot honour."""
        problem = None
        if not self.rate_limits:
            problem = "RateLimitPolicy"
        elif limit.concurrency is not None and not self.rate_limit_concurrency:
            problem = "spec.concurrency"
        elif limit.period_s is not None and limit.period_s not in self.rate_limit_periods:
            unit = {1: "Second", 60: "Minute", 3600: "Hour"}.get(limit.period_s, limit.period_s)
            problem = f"spec.limit.unit {unit}"
        elif limit.key != "ClientIP" and not self.rate_limit_request_keys:
            problem = f"spec.key.type {limit.key}"
        elif limit.burst != limit.requests and not self.rate_limit_burst:
            problem = "spec.limit.burst other than spec.limit.requests"
        return f"{problem} is not supported by the {self.provider} provider" if problem else None

    def auth_problem(self, auth: Auth) -> str | None:
        """The first part of a parsed AuthPolicy the provider cannot honour."""
        signs_in = [
            field
            for field, present in (
                ("apiKey", auth.api_keys is not None),
                ("basic", auth.basic is not None),
                ("externalAuth", auth.external is not None),
                ("jwt", bool(auth.jwt)),
            )
            if present
        ]
        problem = None
        if not self.auth:
            problem = "AuthPolicy"
        elif signs_in and not self.auth_credentials:
            problem = f"spec.{signs_in[0]}"
        elif auth.ip is not None and auth.ip.trusted_proxies and not self.auth_trusted_proxies:
            problem = "spec.ipAccess.trustedProxies"
        return f"{problem} is not supported by the {self.provider} provider" if problem else None

    def waf_problem(self, waf: Waf) -> str | None:
        """The first part of a parsed WebApplicationFirewallPolicy the provider cannot
        honour."""
        problem = None
        rules = waf.rules
        if rules is None:
            if not self.waf_policy_reference:
                problem = "spec.webApplicationFirewall (an Application Gateway WAF policy)"
        elif not self.waf_rules:
            problem = "a WebApplicationFirewallPolicy's own rules (spec.managedRules, customRules)"
        elif not self.waf_crs_tuning and rules.paranoia_level != 1:
            problem = f"spec.managedRules.paranoiaLevel {rules.paranoia_level} (only 1)"
        elif not self.waf_crs_tuning and rules.anomaly_threshold != 5:
            problem = f"spec.managedRules.anomalyThreshold {rules.anomaly_threshold} (only 5)"
        elif (
            self.waf_block_status_codes is not None
            and waf.block_status not in self.waf_block_status_codes
        ):
            problem = f"spec.blockResponse.statusCode {waf.block_status}"
        else:
            problem = self._waf_rules_problem(rules)
        return f"{problem} is not supported by the {self.provider} provider" if problem else None

    def _waf_rules_problem(self, rules: WafRuleSet) -> str | None:
        groups = self.waf_rule_groups
        ids = [
            *rules.disabled_rules,
            *(i for exclusion in rules.exclusions for i in exclusion.rule_ids),
        ]
        if groups is not None and (unknown := [i for i in ids if i[:3] not in groups]):
            return f"spec.managedRules: rule {unknown[0]} (of no rule group the provider runs)"
        limit = self.waf_match_values_max
        for rule in rules.custom_rules:
            for j, condition in enumerate(rule.conditions):
                if (
                    limit is not None
                    and condition.operator != "IPMatch"
                    and len(condition.values) > limit
                ):
                    return (
                        f"spec.customRules (rule {rule.name!r}) matchConditions[{j}] with more "
                        f"than {limit} matchValues"
                    )
        return None

    def health_check_problem(self, health: BackendHealth) -> str | None:
        """The first part of a parsed HealthCheckPolicy the provider cannot honour."""
        if health.passive is not None and not self.passive_health_checks:
            return f"spec.passive is not supported by the {self.provider} provider"
        check = health.probe
        if check is None:
            return None
        field = {"GRPC": "grpc", "TCP": "tcp", "HTTPS": "useTLS"}.get(check.protocol, "http")
        problem = None
        if check.protocol not in self.health_check_protocols:
            problem = f"spec.default.{field}"
        elif check.healthy_threshold != 1 and not self.health_check_healthy_threshold:
            problem = "spec.default.healthyThreshold other than 1"
        elif not self.health_check_subsecond and (
            check.interval_ms % 1000 or check.timeout_ms % 1000
        ):
            problem = "spec.default.interval or timeout in other than whole seconds"
        elif (
            self.health_check_unhealthy_threshold_max is not None
            and check.unhealthy_threshold > self.health_check_unhealthy_threshold_max
        ):
            problem = (
                f"spec.default.unhealthyThreshold above {self.health_check_unhealthy_threshold_max}"
            )
        return f"{problem} is not supported by the {self.provider} provider" if problem else None

    def load_balancing_problem(self, balancing: LoadBalancing) -> str | None:
        """The first part of a parsed BackendLoadBalancingPolicy the provider cannot honour.
        A policy is accepted whole or not at all: when its loadBalancing or
        circuitBreaker is refused, the message says its connectionDraining goes too."""
        problem = None
        draining = balancing.draining
        if balancing.strategy not in self.load_balancing_strategies:
            problem = f"spec.loadBalancing.strategy {balancing.strategy}"
        elif balancing.slow_start_ms is not None and not self.slow_start:
            problem = "spec.loadBalancing.slowStartWindow"
        elif balancing.max_requests is not None and not self.circuit_breaker:
            problem = "spec.circuitBreaker"
        elif (
            not self.connection_draining_subsecond
            and draining is not None
            and draining.timeout_ms is not None
            and draining.timeout_ms % 1000
        ):
            return (
                "spec.connectionDraining.timeout in other than whole seconds is not supported "
                f"by the {self.provider} provider"
            )
        if problem is None:
            return None
        problem += f" is not supported by the {self.provider} provider"
        if draining is not None:
            problem += "; the policy is refused whole, its spec.connectionDraining included"
        return problem

    def load_balancing_note(self, balancing: LoadBalancing) -> str | None:
        """What the provider does otherwise than an accepted BackendLoadBalancingPolicy
        says, for its Accepted message."""
        if balancing.draining is None or self.connection_draining_cutoff:
            return None
        return (
            f"spec.connectionDraining is not enforced by the {self.provider} provider: "
            "requests in flight to an endpoint that leaves always finish (never cut when the "
            "timeout ends, nor at once when draining is disabled), bounded only by the "
            "timeouts every request has"
        )

    def backends_problem(self, field: str, protocols: Iterable[str]) -> str | None:
        """Why one rule's backends (their protocols) cannot be programmed; None if they can."""
        if not self.h2c_backends and "h2c" in protocols:
            return (
                f"{field}.backendRefs: a Service port with appProtocol kubernetes.io/h2c "
                f"(HTTP/2 to the backend) is not supported by the {self.provider} provider"
            )
        return None

    def rule_problem(self, field: str, rule: Mapping[str, Any]) -> str | None:
        """The first unsupported field of one raw route rule, as a message; None if none."""
        unsupported = self._unsupported_field(field, rule)
        if unsupported is None:
            return None
        return f"{unsupported} is not supported by the {self.provider} provider"

    def _unsupported_field(self, field: str, rule: Mapping[str, Any]) -> str | None:
        for j, match in enumerate(rule.get("matches") or []):
            if problem := self._match_problem(f"{field}.matches[{j}]", match):
                return problem
        for j, f in enumerate(rule.get("filters") or []):
            if problem := self._filter_problem(f"{field}.filters[{j}]", f):
                return problem
        refs = rule.get("backendRefs") or []
        weighted = [ref for ref in refs if int(ref.get("weight", 1)) != 0]
        if not self.weighted_backends and len(weighted) > 1:
            return f"{field}.backendRefs (a weighted split over {len(weighted)} backends)"
        for j, ref in enumerate(refs):
            if not self.backend_filters and ref.get("filters"):
                return f"{field}.backendRefs[{j}].filters"
        retry = rule.get("retry")
        if not self.retries and retry:
            return f"{field}.retry"
        if retry and self.retry_attempts_max is not None:
            attempts = int(retry.get("attempts", 1))
            if attempts > self.retry_attempts_max:
                return f"{field}.retry.attempts above {self.retry_attempts_max} ({attempts})"
        persistence = rule.get("sessionPersistence")
        if persistence:
            if persistence.get("type", "Cookie") not in self.session_persistence_types:
                return f"{field}.sessionPersistence.type {persistence.get('type')!r}"
            for key in ("absoluteTimeout", "idleTimeout"):
                if not self.session_persistence_timeouts and key in persistence:
                    return f"{field}.sessionPersistence.{key}"
        return None

    def _match_problem(self, field: str, match: Mapping[str, Any]) -> str | None:
        if not self.header_matches and match.get("headers"):
            return f"{field}.headers"
        if not self.query_param_matches and match.get("queryParams"):
            return f"{field}.queryParams"
        method = match.get("method")
        # GRPCRoute's `method` is a service/method object, i.e. a path, not an HTTP method
        if not self.method_matches and isinstance(method, str):
            return f"{field}.method"
        path = match.get("path")
        if not self.regex_paths and path and path.get("type") == "RegularExpression":
            return f"{field}.path.type 'RegularExpression'"
        if (
            not self.regex_paths
            and isinstance(method, dict)
            and method.get("type") == "RegularExpression"
        ):
            return f"{field}.method.type 'RegularExpression'"
        return None

    def _filter_problem(self, field: str, f: Mapping[str, Any]) -> str | None:
        kind = f.get("type")
        if kind == "RequestMirror" and not self.mirrors:
            return f"{field} (RequestMirror)"
        if kind == "CORS" and not self.cors:
            return f"{field} (CORS)"
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier") and not self.header_add:
            key = kind[0].lower() + kind[1:]
            if (f.get(key) or {}).get("add"):
                return f"{field}.{key}.add"
        if kind == "RequestRedirect":
            redirect = f.get("requestRedirect") or {}
            code = int(redirect.get("statusCode", 302))
            # codes translation rejects anyway keep translation's own message
            if code in _ALL_REDIRECT_CODES and code not in self.redirect_status_codes:
                return f"{field}.requestRedirect.statusCode {code}"
            path_type = (redirect.get("path") or {}).get("type")
            if path_type == "ReplacePrefixMatch" and not self.redirect_prefix_replace:
                return f"{field}.requestRedirect.path.type 'ReplacePrefixMatch'"
        if kind == "URLRewrite":
            path_type = ((f.get("urlRewrite") or {}).get("path") or {}).get("type")
            if path_type == "ReplacePrefixMatch" and not self.rewrite_prefix_replace:
                return f"{field}.urlRewrite.path.type 'ReplacePrefixMatch'"
        if kind == "ExtensionRef":
            ref = f.get("extensionRef") or {}
            group_kind = (ref.get("group"), ref.get("kind"))
            if group_kind == (POLICY_GROUP, HTTP_ROUTE_FILTER.kind) and not self.route_filters:
                return f"{field}.extensionRef (HTTPRouteFilter)"
            if (
                group_kind == (APPGW_GROUP, APPGW_REWRITE_RULE_SET)
                and not self.application_gateway_children
            ):
                return f"{field}.extensionRef (an Application Gateway {APPGW_REWRITE_RULE_SET})"
        return None


# Everything translation implements: the local data plane's capabilities.
FULL = Capabilities()
