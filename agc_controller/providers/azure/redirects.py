"""Redirect configurations (RequestRedirect).

Application Gateway redirects to a fixed target URL, appending the request's
path and query when asked, or to one of its listeners, keeping the request's
host, path and query. So the target host must be known — the filter's
hostname, or the host's own name when it is exact — or, on a wildcard or
catch-all host, a listener of the Gateway must serve that host at the target
scheme and port (an HTTP → HTTPS redirect with an HTTPS listener of the same
hostname): the redirect then names that listener. Otherwise it cannot be
expressed. Port rules
follow Gateway API: an explicit port; else the scheme's well-known port when
the scheme changes; else the listener's port. 308 and ReplacePrefixMatch are
refused earlier, by the capabilities (translate).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json, RuleProblem
from agc_controller.translate.model import Host, Redirect, Rule

REDIRECT_TYPES = {301: "Permanent", 302: "Found", 303: "SeeOther", 307: "Temporary"}
_WELL_KNOWN = {"http": 80, "https": 443}

# (hostname as written, port, scheme) -> the reference of the listener serving it
ListenerFor = Callable[[str, int, str], Json | None]


def add_redirect(
    c: Collector, rule: Rule, host: Host, listener_scheme: str, listener_for: ListenerFor
) -> Json:
    redirect = rule.redirect
    assert redirect is not None
    redirect_type = REDIRECT_TYPES.get(redirect.status_code)
    if redirect_type is None:
        raise RuleProblem(
            f"redirect status code {redirect.status_code} is not supported by the azure provider"
        )
    props: Json = {"redirectType": redirect_type}
    target = _target_listener(redirect, host, listener_scheme, listener_for)
    if target is not None:
        props["targetListener"] = target
    else:
        props["targetUrl"] = _target_url(redirect, host, listener_scheme)
    props["includePath"] = redirect.path_type is None
    props["includeQueryString"] = True
    readable = (
        f"{rule.route.namespace}-{rule.route.name}-{rule.rule_index}-"
        f"{naming.digest(json.dumps(props, sort_keys=True))}"
    )
    return c.add("redirectConfigurations", naming.child_name(c.gateway, "redir", readable), props)


def _target_listener(
    redirect: Redirect, host: Host, listener_scheme: str, listener_for: ListenerFor
) -> Json | None:
    """The listener to redirect to, for a redirect keeping the request's host on a
    wildcard or catch-all host (and its path: a listener keeps it)."""
    if redirect.hostname is not None or not host.hostname.startswith("*"):
        return None
    if redirect.path_type is not None:
        return None
    scheme = redirect.scheme or listener_scheme
    return listener_for(host.hostname, _port(redirect, host, scheme), scheme)


def _port(redirect: Redirect, host: Host, scheme: str) -> int:
    if redirect.port is not None:
        return redirect.port
    if redirect.scheme is not None:
        return _WELL_KNOWN[scheme]
    return host.port


def _target_url(redirect: Redirect, host: Host, listener_scheme: str) -> str:
    hostname = redirect.hostname
    if hostname is None:
        if host.hostname.startswith("*"):
            raise RuleProblem(
                "a redirect without a hostname on a wildcard host cannot be expressed by the "
                "azure provider (Application Gateway redirects to a fixed URL, or to a listener "
                "of the Gateway serving the same host at the target scheme and port)"
            )
        hostname = host.hostname
    scheme = redirect.scheme or listener_scheme
    port = _port(redirect, host, scheme)
    authority = hostname if port == _WELL_KNOWN.get(scheme) else f"{hostname}:{port}"
    if redirect.path_type == "ReplaceFullPath" and redirect.path_value is not None:
        return f"{scheme}://{authority}{redirect.path_value}"
    if redirect.path_type is not None:
        raise RuleProblem("redirect ReplacePrefixMatch is not supported by the azure provider")
    return f"{scheme}://{authority}"
