"""Routes of every kind: parse, validate and resolve one route, independent of parents.

A rule with an invalid value is dropped (the route reports PartiallyInvalid,
"Dropped Rule ..."); a route whose rules are all invalid is not accepted.
Unresolvable backends keep their weight and answer 500 (see graph.backends).
GRPCRoute method matches become path matches here (`/service/method`), so the
data plane treats both kinds alike; their precedence follows GRPCRoute's own
order (see `GrpcRank`). TLSRoute, TCPRoute and UDPRoute rules have backendRefs
only: they route connections, never requests, so their rules have no matches.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.resources import (
    APPGW_REWRITE_RULE_SET,
    HTTP_ROUTE_FILTER,
    POLICY_GROUP,
)
from agc_controller.core.status import ParentReference
from agc_controller.translate import validate
from agc_controller.translate.capabilities import FULL, Capabilities
from agc_controller.translate.graph import appgw
from agc_controller.translate.graph.backends import BackendProblem, ResolvedBackend, resolve_backend
from agc_controller.translate.hostnames import is_valid_hostname
from agc_controller.translate.model import (
    BackendProtocol,
    Cors,
    HeaderModifier,
    Match,
    PathMatch,
    Redirect,
    Retry,
    SessionPersistence,
    UrlRewrite,
    ValueMatch,
)
from agc_controller.translate.refgrants import ReferenceGrants
from agc_controller.translate.snapshot import Obj, Snapshot

RouteKind = Literal["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"]
# the kinds that route connections (by SNI, or all of a port's): no request matching
STREAM_KINDS: frozenset[str] = frozenset({"TLSRoute", "TCPRoute", "UDPRoute"})


# GRPCRoute precedence of one match: (path rank as in build._PATH_RANK: 0 exact
# service+method, 1 regular expression, 2 anything else; characters in the matched
# service; characters in the matched method). More characters come first.
GrpcRank = tuple[int, int, int]


class RuleInvalid(ValueError):
    """A rule holds a value the controller cannot implement safely."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


@attrs.frozen
class MirrorNode:
    backend: ResolvedBackend
    percent: float


@attrs.frozen
class ErrorPagesNode:
    """Answers with these statuses are replaced by the backend's (HTTPRouteFilter)."""

    codes: tuple[int, ...]
    backend: ResolvedBackend


@attrs.frozen
class RuleNode:
    index: int
    name: str | None
    matches: tuple[Match, ...]
    backends: tuple[ResolvedBackend, ...] = ()
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: Redirect | None = None
    rewrite: UrlRewrite | None = None
    mirrors: tuple[MirrorNode, ...] = ()
    cors: Cors | None = None
    request_timeout_ms: int | None = None
    backend_timeout_ms: int | None = None
    retry: Retry | None = None
    session_persistence: SessionPersistence | None = None
    # bytes a request body may have (our HTTPRouteFilter); None: no limit
    max_body_bytes: int | None = None
    # a rewrite rule set already on the Application Gateway, by name (graph/appgw.py)
    rewrite_rule_set: str | None = None
    # the backend answering in place of the rule's backends for some statuses
    error_pages: ErrorPagesNode | None = None
    # GRPCRoute only: the precedence rank of each match (same order as `matches`)
    grpc_ranks: tuple[GrpcRank, ...] = ()

    def used_backends(self) -> tuple[ResolvedBackend, ...]:
        """Every backend the rule may send a request to."""
        pages = (self.error_pages.backend,) if self.error_pages is not None else ()
        return (*self.backends, *(m.backend for m in self.mirrors), *pages)


@attrs.frozen
class RouteNode:
    key: ObjectKey
    kind: RouteKind
    generation: int
    # RFC 3339 creation time; sorts like time
    created: str
    hostnames: tuple[str, ...]
    parent_refs: tuple[ParentReference, ...]
    rules: tuple[RuleNode, ...]
    # (reason, message) per unresolved reference, for ResolvedRefs
    unresolved: tuple[BackendProblem, ...]
    # (rule index, reason, message) per dropped rule
    dropped: tuple[tuple[int, str, str], ...]
    # a problem with the route as a whole (e.g. an invalid hostname): nothing is served
    spec_problem: str | None = None

    @property
    def accepted_problem(self) -> tuple[str, str] | None:
        """Why no rule can be served, if none can."""
        if self.spec_problem:
            return c.R_UNSUPPORTED_VALUE, self.spec_problem
        if self.rules or not self.dropped:
            return None
        reason = self.dropped[0][1]
        return reason, c.join_problems([m for _, _, m in self.dropped])


def build_route(
    route: Obj,
    kind: RouteKind,
    snapshot: Snapshot,
    grants: ReferenceGrants,
    capabilities: Capabilities = FULL,
) -> RouteNode:
    meta = route["metadata"]
    namespace = meta["namespace"]
    spec = route.get("spec") or {}
    rules: list[RuleNode] = []
    dropped: list[tuple[int, str, str]] = []
    unresolved: list[BackendProblem] = []
    parser = _RuleParser(
        kind=kind, namespace=namespace, snapshot=snapshot, grants=grants, mesh=capabilities.mesh
    )
    raw_rules = spec.get("rules") or [{}]
    for i, raw in enumerate(raw_rules):
        try:
            # what the provider cannot program is reported before anything else
            if unsupported := capabilities.rule_problem(f"spec.rules[{i}]", raw):
                raise RuleInvalid(c.R_UNSUPPORTED_VALUE, unsupported)
            rule, problems = parser.parse(i, raw)
            if kind == "HTTPRoute" and (
                unsupported := capabilities.backends_problem(
                    f"spec.rules[{i}]", (b.protocol for b in rule.backends)
                )
            ):
                raise RuleInvalid(c.R_UNSUPPORTED_VALUE, unsupported)
        except RuleInvalid as e:
            dropped.append((i, e.reason, f"Dropped Rule {i}: {e}"))
            continue
        rules.append(rule)
        unresolved.extend(problems)
    hostnames = tuple(str(h) for h in spec.get("hostnames") or [])
    spec_problem = next(
        (
            f"spec.hostnames[{i}] {h[:64]!r} is not a valid hostname"
            for i, h in enumerate(hostnames)
            if not is_valid_hostname(h)
        ),
        None,
    )
    return RouteNode(
        key=ObjectKey(kind, namespace, meta["name"]),
        kind=kind,
        generation=int(meta.get("generation", 1)),
        created=str(meta.get("creationTimestamp", "")),
        hostnames=hostnames,
        parent_refs=tuple(
            ParentReference.from_api(ref, default_namespace=namespace)
            for ref in spec.get("parentRefs") or []
        ),
        rules=tuple(rules),
        unresolved=tuple(unresolved),
        dropped=tuple(dropped),
        spec_problem=spec_problem,
    )


@attrs.define
class _RuleParser:
    kind: RouteKind
    namespace: str
    snapshot: Snapshot
    grants: ReferenceGrants
    # backends in Istio-injected namespaces go over mesh mTLS (Capabilities.mesh)
    mesh: bool

    @property
    def _default_protocol(self) -> BackendProtocol:
        return "h2c" if self.kind == "GRPCRoute" else "http"

    def parse(self, index: int, raw: Obj) -> tuple[RuleNode, list[BackendProblem]]:
        field = f"spec.rules[{index}]"
        problems: list[BackendProblem] = []
        parsed = [
            self._match(f"{field}.matches[{j}]", m)
            for j, m in enumerate(raw.get("matches") or [{}])
            if self.kind not in STREAM_KINDS
        ]
        matches = tuple(m for m, _ in parsed)
        grpc_ranks = tuple(r for _, r in parsed if r is not None)
        filters = _Filters()
        for j, f in enumerate(raw.get("filters") or []):
            self._filter(f"{field}.filters[{j}]", f, filters, problems)
        for filter_type, modifier in (
            ("URLRewrite", filters.rewrite),
            ("RequestRedirect", filters.redirect),
        ):
            if (
                modifier is not None
                and modifier.path_type == "ReplacePrefixMatch"
                and any(m.path.type != "PathPrefix" for m in matches)
            ):
                raise RuleInvalid(
                    c.R_UNSUPPORTED_VALUE,
                    f"{field}: {filter_type} ReplacePrefixMatch needs PathPrefix matches only",
                )
        backends = []
        for j, ref in enumerate(raw.get("backendRefs") or []):
            backend_field = f"{field}.backendRefs[{j}]"
            ref_filters = _Filters()
            for k, f in enumerate(ref.get("filters") or []):
                self._filter(f"{backend_field}.filters[{k}]", f, ref_filters, problems)
            if ref_filters.has_route_only_filters():
                raise RuleInvalid(
                    c.R_UNSUPPORTED_VALUE,
                    f"{backend_field}.filters supports only header modifiers",
                )
            backend, problem = resolve_backend(
                ref,
                field=backend_field,
                route_kind=self.kind,
                route_namespace=self.namespace,
                snapshot=self.snapshot,
                grants=self.grants,
                default_protocol=self._default_protocol,
                mesh=self.mesh,
                request_headers=ref_filters.request_headers,
                response_headers=ref_filters.response_headers,
            )
            if ref_filters.extension_ref_problem:
                # its requests must fail, never skip the filter (its problem is already listed)
                backend = attrs.evolve(backend, valid=False)
            backends.append(backend)
            if problem:
                problems.append(problem)
        if filters.error_pages is not None and (
            raw.get("retry")
            or filters.mirrors
            or any(b.protocol == "h2c" or b.mesh for b in backends)
        ):
            # the data plane replaces answers in a location of its own (static.py), which
            # retries, mirrors, gRPC and the mesh each need for themselves
            raise RuleInvalid(
                c.R_UNSUPPORTED_VALUE,
                f"{field}: an HTTPRouteFilter's errorPages cannot go with retries, mirrors, "
                "h2c (gRPC) backends or backends in the mesh",
            )
        if filters.extension_ref_problem:
            # an unresolvable extension must fail the requests it covers, never be skipped
            backends = [ResolvedBackend(name="extensionRef", weight=1, valid=False)]
        timeouts = raw.get("timeouts") or {}
        request_ms = _timeout(f"{field}.timeouts.request", timeouts.get("request"))
        backend_ms = _timeout(f"{field}.timeouts.backendRequest", timeouts.get("backendRequest"))
        if request_ms and backend_ms is not None and backend_ms > request_ms:
            raise RuleInvalid(
                c.R_UNSUPPORTED_VALUE,
                f"{field}.timeouts.backendRequest {timeouts['backendRequest']!r} is longer than "
                f"timeouts.request {timeouts['request']!r}",
            )
        name = raw.get("name")
        return (
            RuleNode(
                index=index,
                name=str(name) if name else None,
                matches=matches,
                backends=tuple(backends),
                request_headers=filters.request_headers,
                response_headers=filters.response_headers,
                redirect=filters.redirect,
                rewrite=filters.rewrite,
                mirrors=tuple(filters.mirrors),
                cors=filters.cors,
                request_timeout_ms=request_ms,
                backend_timeout_ms=backend_ms,
                retry=_retry(f"{field}.retry", raw.get("retry")),
                session_persistence=_session_persistence(
                    f"{field}.sessionPersistence", raw.get("sessionPersistence")
                ),
                max_body_bytes=filters.max_body_bytes,
                rewrite_rule_set=filters.rewrite_rule_set,
                error_pages=filters.error_pages,
                grpc_ranks=grpc_ranks,
            ),
            problems,
        )

    def _match(self, field: str, raw: Obj) -> tuple[Match, GrpcRank | None]:
        headers = _value_matches(f"{field}.headers", raw.get("headers"), header=True)
        if self.kind == "GRPCRoute":
            grpc_path, rank = _grpc_path(f"{field}.method", raw.get("method"))
            return Match(path=grpc_path, headers=headers), rank
        path = raw.get("path") or {"type": "PathPrefix", "value": "/"}
        path_type, value = path.get("type", "PathPrefix"), str(path.get("value", "/"))
        if path_type in ("Exact", "PathPrefix"):
            problem = validate.path(value)
        elif path_type == "RegularExpression":
            problem = validate.regex(value)
        else:
            problem = f"path type {path_type!r} is not supported"
        if problem:
            raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.path: {problem}")
        method = raw.get("method")
        if method is not None and (problem := validate.method(method)):
            raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.method: {problem}")
        return Match(
            path=PathMatch(type=path_type, value=value),
            method=method,
            headers=headers,
            query_params=_value_matches(
                f"{field}.queryParams", raw.get("queryParams"), header=False
            ),
        ), None

    def _filter(self, field: str, raw: Obj, into: _Filters, problems: list[BackendProblem]) -> None:
        kind = raw.get("type")
        if kind == "RequestHeaderModifier":
            into.request_headers = _header_modifier(
                f"{field}.requestHeaderModifier", raw.get("requestHeaderModifier")
            )
        elif kind == "ResponseHeaderModifier":
            into.response_headers = _header_modifier(
                f"{field}.responseHeaderModifier", raw.get("responseHeaderModifier")
            )
        elif kind == "RequestRedirect" and self.kind == "HTTPRoute":
            into.redirect = _redirect(f"{field}.requestRedirect", raw.get("requestRedirect") or {})
        elif kind == "URLRewrite" and self.kind == "HTTPRoute":
            into.add_rewrite(field, _rewrite(f"{field}.urlRewrite", raw.get("urlRewrite") or {}))
        elif kind == "RequestMirror":
            mirror = self._mirror(
                f"{field}.requestMirror", raw.get("requestMirror") or {}, problems
            )
            if mirror is not None:
                into.mirrors.append(mirror)
        elif kind == "CORS" and self.kind == "HTTPRoute":
            into.cors = _cors(f"{field}.cors", raw.get("cors") or {})
        elif kind == "ExtensionRef" and (
            self._route_filter(field, raw, into, problems)
            or self._rewrite_rule_set(field, raw, into)
        ):
            pass
        elif kind == "ExtensionRef":
            ref = raw.get("extensionRef") or {}
            problems.append(
                BackendProblem(
                    c.R_INVALID_KIND,
                    f"{field}.extensionRef {ref.get('group')}/{ref.get('kind')} {ref.get('name')} "
                    "is not a supported extension; its requests get HTTP 500",
                )
            )
            into.extension_ref_problem = True
        else:
            raise RuleInvalid(
                c.R_UNSUPPORTED_VALUE, f"{field}.type {kind!r} is not supported on {self.kind}"
            )

    def _rewrite_rule_set(self, field: str, raw: Obj, into: _Filters) -> bool:
        """An ExtensionRef naming a rewrite rule set on the Application Gateway (True);
        the capabilities let only the azure provider's rules through. False: not one."""
        ref = raw.get("extensionRef") or {}
        if self.kind != "HTTPRoute" or not appgw.names(ref, APPGW_REWRITE_RULE_SET):
            return False
        if problem := appgw.name_problem(f"{field}.extensionRef", ref):
            raise RuleInvalid(c.R_UNSUPPORTED_VALUE, problem)
        if into.rewrite_rule_set is not None:
            raise RuleInvalid(
                c.R_UNSUPPORTED_VALUE, f"{field}: a rule takes one {APPGW_REWRITE_RULE_SET}"
            )
        into.rewrite_rule_set = str(ref["name"])
        return True

    def _route_filter(
        self, field: str, raw: Obj, into: _Filters, problems: list[BackendProblem]
    ) -> bool:
        """An ExtensionRef to our HTTPRouteFilter: its rewrite joins the rule's (True),
        or its requests get 500 when it is missing (True, with the problem listed).
        False: not ours."""
        ref = raw.get("extensionRef") or {}
        if self.kind != "HTTPRoute" or (ref.get("group"), ref.get("kind")) != (
            POLICY_GROUP,
            HTTP_ROUTE_FILTER.kind,
        ):
            return False
        name = namespaced_name(self.namespace, str(ref.get("name", "")))
        found = self.snapshot.route_filters.get(name)
        if found is None:
            problems.append(
                BackendProblem(
                    c.R_BACKEND_NOT_FOUND,
                    f"{field}.extensionRef: HTTPRouteFilter {name} not found; its requests "
                    "get HTTP 500",
                )
            )
            into.extension_ref_problem = True
            return True
        spec = found.get("spec") or {}
        where = f"{field} (HTTPRouteFilter {name})"
        if "urlRewrite" in spec:
            into.add_rewrite(field, _regex_rewrite(where, found))
        if "requestBody" in spec:
            if into.max_body_bytes is not None:
                raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}: a rule takes one body limit")
            into.max_body_bytes = _max_body(where, spec["requestBody"])
        if "errorPages" in spec:
            if into.error_pages is not None:
                raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}: a rule takes one errorPages")
            into.error_pages = self._error_pages(where, spec["errorPages"], into, problems)
        return True

    def _error_pages(
        self, field: str, raw: Obj, into: _Filters, problems: list[BackendProblem]
    ) -> ErrorPagesNode:
        codes = raw.get("statusCodes") if isinstance(raw, dict) else None
        if (
            not isinstance(codes, list)
            or not codes
            or not all(isinstance(code, int) and 400 <= code <= 599 for code in codes)
        ):
            raise RuleInvalid(
                c.R_UNSUPPORTED_VALUE,
                f"{field}: errorPages.statusCodes must be status codes from 400 to 599",
            )
        ref = raw.get("backendRef") or {}
        backend, problem = resolve_backend(
            # in the filter's namespace, which is the route's
            {"name": ref.get("name"), "port": ref.get("port")},
            field=f"{field}.errorPages.backendRef",
            route_kind=self.kind,
            route_namespace=self.namespace,
            snapshot=self.snapshot,
            grants=self.grants,
            default_protocol="http",
            mesh=self.mesh,
        )
        if problem:
            problems.append(problem)
            # the rule's requests fail rather than pass the errors through unreplaced
            into.extension_ref_problem = True
        return ErrorPagesNode(codes=tuple(sorted(set(codes))), backend=backend)

    def _mirror(self, field: str, raw: Obj, problems: list[BackendProblem]) -> MirrorNode | None:
        backend, problem = resolve_backend(
            raw.get("backendRef") or {},
            field=f"{field}.backendRef",
            route_kind=self.kind,
            route_namespace=self.namespace,
            snapshot=self.snapshot,
            grants=self.grants,
            default_protocol=self._default_protocol,
            mesh=self.mesh,
        )
        if problem:
            problems.append(problem)
            return None
        percent = 100.0
        if "percent" in raw:
            percent = float(raw["percent"])
        elif "fraction" in raw:
            fraction = raw["fraction"]
            denominator = int(fraction.get("denominator", 100)) or 100
            percent = 100.0 * int(fraction.get("numerator", 0)) / denominator
        return MirrorNode(backend=backend, percent=max(0.0, min(100.0, percent)))


@attrs.define
class _Filters:
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: Redirect | None = None
    rewrite: UrlRewrite | None = None
    mirrors: list[MirrorNode] = attrs.field(factory=list)
    cors: Cors | None = None
    extension_ref_problem: bool = False
    max_body_bytes: int | None = None
    rewrite_rule_set: str | None = None
    error_pages: ErrorPagesNode | None = None

    def add_rewrite(self, field: str, rewrite: UrlRewrite) -> None:
        """A rule's URL rewrites combine: one may rewrite the host, one the path."""
        known = self.rewrite
        if known is None:
            self.rewrite = rewrite
            return
        if (known.hostname and rewrite.hostname) or (known.path_type and rewrite.path_type):
            raise RuleInvalid(
                c.R_UNSUPPORTED_VALUE,
                f"{field}: a rule rewrites the host once and the path once",
            )
        self.rewrite = attrs.evolve(
            known,
            hostname=known.hostname or rewrite.hostname,
            path_type=known.path_type or rewrite.path_type,
            path_value=known.path_value if known.path_type else rewrite.path_value,
            path_pattern=known.path_pattern if known.path_type else rewrite.path_pattern,
        )

    def has_route_only_filters(self) -> bool:
        return bool(
            self.redirect
            or self.rewrite
            or self.mirrors
            or self.cors
            or self.rewrite_rule_set
            or self.error_pages
        )


def _value_matches(field: str, raw: list[Obj] | None, *, header: bool) -> tuple[ValueMatch, ...]:
    found: dict[str, ValueMatch] = {}
    for i, m in enumerate(raw or []):
        name, value, match_type = (
            str(m.get("name", "")),
            str(m.get("value", "")),
            m.get("type", "Exact"),
        )
        problem = validate.header_name(name) if header else validate.query_name(name)
        if problem is None:
            problem = (
                validate.regex(value)
                if match_type == "RegularExpression"
                else validate.header_value(value)
            )
        if problem is None and match_type not in ("Exact", "RegularExpression"):
            problem = f"match type {match_type!r} is not supported"
        if problem:
            raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}[{i}]: {problem}")
        # duplicate names: the first wins (header names compare case-insensitively)
        found.setdefault(
            name.lower() if header else name, ValueMatch(type=match_type, name=name, value=value)
        )
    return tuple(found.values())


def _grpc_path(field: str, raw: Obj | None) -> tuple[PathMatch, GrpcRank]:
    """A GRPCRoute method match as a path match, with its GRPCRoute precedence rank."""
    if not raw:
        return PathMatch(type="PathPrefix", value="/"), (2, 0, 0)
    match_type = raw.get("type", "Exact")
    service, method = raw.get("service") or "", raw.get("method") or ""
    if match_type == "Exact":
        for value, check, name in (
            (service, validate.grpc_service, "service"),
            (method, validate.grpc_method, "method"),
        ):
            if value and (problem := check(value)):
                raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.{name}: {problem}")
        rank = (2, len(service), len(method))
        if service and method:
            return PathMatch(type="Exact", value=f"/{service}/{method}"), (0, *rank[1:])
        if service:
            return PathMatch(type="PathPrefix", value=f"/{service}"), rank
        if method:
            return PathMatch(type="RegularExpression", value=f"/[^/]+/{re.escape(method)}"), rank
        return PathMatch(type="PathPrefix", value="/"), rank
    if match_type == "RegularExpression":
        for value, name in ((service, "service"), (method, "method")):
            if value and (problem := validate.regex(value)):
                raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.{name}: {problem}")
        path = PathMatch(
            type="RegularExpression", value=f"/({service or '[^/]+'})/({method or '[^/]+'})"
        )
        return path, (1, len(service), len(method))
    raise RuleInvalid(
        c.R_UNSUPPORTED_VALUE, f"{field}.type {str(match_type)[:64]!r} is not supported"
    )


def _header_modifier(field: str, raw: Obj | None) -> HeaderModifier:
    raw = raw or {}
    pairs: dict[str, tuple[tuple[str, str], ...]] = {}
    for action in ("set", "add"):
        items = []
        for i, h in enumerate(raw.get(action) or []):
            name, value = str(h.get("name", "")), str(h.get("value", ""))
            problem = validate.header_name(name) or validate.header_value(value)
            if problem:
                raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.{action}[{i}]: {problem}")
            items.append((name, value))
        pairs[action] = tuple(items)
    remove = []
    for i, name in enumerate(raw.get("remove") or []):
        if problem := validate.header_name(str(name)):
            raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.remove[{i}]: {problem}")
        remove.append(str(name))
    return HeaderModifier(set=pairs["set"], add=pairs["add"], remove=tuple(remove))


def _path_modifier(field: str, raw: Obj | None) -> tuple[Any, str | None]:
    if not raw:
        return None, None
    path_type = raw.get("type")
    if path_type == "ReplaceFullPath":
        value = str(raw.get("replaceFullPath", "/"))
    elif path_type == "ReplacePrefixMatch":
        value = str(raw.get("replacePrefixMatch", "/")) or "/"
    else:
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.type {path_type!r} is not supported")
    if problem := validate.path(value):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}: {problem}")
    return path_type, value


def _redirect(field: str, raw: Obj) -> Redirect:
    scheme, hostname = raw.get("scheme"), raw.get("hostname")
    if scheme is not None and scheme not in ("http", "https"):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.scheme {scheme!r} must be http or https")
    if hostname is not None and (problem := validate.precise_hostname(hostname)):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.hostname: {problem}")
    status = int(raw.get("statusCode", 302))
    if status not in (301, 302, 303, 307, 308):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.statusCode {status} is not supported")
    path_type, path_value = _path_modifier(f"{field}.path", raw.get("path"))
    port = raw.get("port")
    return Redirect(
        status_code=status,
        scheme=scheme,
        hostname=hostname,
        port=int(port) if port is not None else None,
        path_type=path_type,
        path_value=path_value,
    )


def _rewrite(field: str, raw: Obj) -> UrlRewrite:
    hostname = raw.get("hostname")
    if hostname is not None and (problem := validate.precise_hostname(hostname)):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.hostname: {problem}")
    path_type, path_value = _path_modifier(f"{field}.path", raw.get("path"))
    return UrlRewrite(hostname=hostname, path_type=path_type, path_value=path_value)


# the largest body limit: 1 TiB
MAX_BODY_BYTES = 2**40


def _max_body(field: str, raw: Obj) -> int:
    value = raw.get("maxBytes") if isinstance(raw, dict) else None
    if not isinstance(value, int) or not 0 < value <= MAX_BODY_BYTES:
        raise RuleInvalid(
            c.R_UNSUPPORTED_VALUE,
            f"{field}: requestBody.maxBytes must be a whole number from 1 to {MAX_BODY_BYTES}",
        )
    return value


# \1 to \9 in a substitution: the pattern's capture groups
_GROUP_REFERENCE = re.compile(r"\\([1-9])")


def _regex_rewrite(field: str, route_filter: Obj) -> UrlRewrite:
    """The path rewrite of an HTTPRouteFilter (the CRD checked its shape)."""
    path = (((route_filter.get("spec") or {}).get("urlRewrite") or {}).get("path")) or {}
    spec = path.get("replaceRegexMatch") or {}
    pattern, substitution = str(spec.get("pattern", "")), str(spec.get("substitution", ""))
    if path.get("type") != "ReplaceRegexMatch":
        raise RuleInvalid(
            c.R_UNSUPPORTED_VALUE, f"{field}: urlRewrite.path.type must be ReplaceRegexMatch"
        )
    if problem := validate.regex(pattern):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}: pattern: {problem}")
    groups = re.compile(pattern).groups
    if any(int(n) > groups for n in _GROUP_REFERENCE.findall(substitution)):
        raise RuleInvalid(
            c.R_UNSUPPORTED_VALUE,
            f"{field}: substitution {substitution[:64]!r} names a group the pattern lacks "
            f"(it has {groups})",
        )
    # a group may bring the leading "/" (the data plane adds one when it does not)
    if problem := validate.path(_GROUP_REFERENCE.sub("/x", substitution) or "/"):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}: substitution: {problem}")
    return UrlRewrite(path_type="ReplaceRegexMatch", path_value=substitution, path_pattern=pattern)


def _cors(field: str, raw: Obj) -> Cors:
    def strings(key: str) -> tuple[str, ...]:
        values = tuple(str(v) for v in raw.get(key) or [])
        for i, v in enumerate(values):
            if problem := validate.header_value(v):
                raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.{key}[{i}]: {problem}")
        if "*" in values and len(values) > 1:
            raise RuleInvalid(
                c.R_UNSUPPORTED_VALUE, f"{field}.{key}: '*' cannot be combined with other values"
            )
        return values

    return Cors(
        allow_origins=strings("allowOrigins"),
        allow_methods=strings("allowMethods"),
        allow_headers=strings("allowHeaders"),
        expose_headers=strings("exposeHeaders"),
        allow_credentials=bool(raw.get("allowCredentials", False)),
        max_age=int(raw.get("maxAge", 5)),
    )


def _timeout(field: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    value = validate.duration_ms(str(raw))
    if value is None:
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field} {raw!r} is not a valid duration")
    return value


def _retry(field: str, raw: Obj | None) -> Retry | None:
    if not raw:
        return None
    backoff = _timeout(f"{field}.backoff", raw.get("backoff"))
    return Retry(
        codes=tuple(sorted(int(code) for code in raw.get("codes") or [])),
        attempts=int(raw.get("attempts", 1)),
        backoff_ms=backoff,
    )


def _session_persistence(field: str, raw: Obj | None) -> SessionPersistence | None:
    if not raw:
        return None
    kind = raw.get("type", "Cookie")
    if kind not in ("Cookie", "Header"):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.type {kind!r} is not supported")
    name = str(raw.get("sessionName") or "agc-session")
    if problem := validate.header_name(name):
        raise RuleInvalid(c.R_UNSUPPORTED_VALUE, f"{field}.sessionName: {problem}")
    absolute = _timeout(f"{field}.absoluteTimeout", raw.get("absoluteTimeout"))
    idle = _timeout(f"{field}.idleTimeout", raw.get("idleTimeout"))
    return SessionPersistence(
        type=kind,
        name=name,
        absolute_timeout_s=absolute // 1000 if absolute is not None else None,
        idle_timeout_s=idle // 1000 if idle is not None else None,
    )
