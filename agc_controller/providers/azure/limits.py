"""Application Gateway v2 limits, checked before any PUT.

ARM refuses a body over these limits after a long wait; checking first gives
the Gateway a precise condition at once and keeps the last good configuration
serving. Numbers: Azure subscription and service limits, Application Gateway
v2 (listeners: 100 active; every listener we create is active). A WAF_v2
gateway whose own firewall runs the OWASP Core Rule Set 3.1 or older
(`webApplicationFirewallConfiguration`) takes at most 40 of most children.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# collection -> (limit, what a message calls one)
LIMITS: Mapping[str, tuple[int, str]] = {
    "httpListeners": (100, "listeners"),
    "requestRoutingRules": (400, "request routing rules"),
    "backendAddressPools": (100, "backend pools"),
    "backendHttpSettingsCollection": (100, "backend settings"),
    "sslCertificates": (100, "SSL certificates"),
    "trustedRootCertificates": (100, "trusted root certificates"),
    "trustedClientCertificates": (100, "trusted client certificates"),
    "sslProfiles": (100, "SSL profiles"),
    "frontendPorts": (100, "frontend ports"),
    "probes": (100, "health probes"),
    "urlPathMaps": (100, "URL path maps"),
    "redirectConfigurations": (100, "redirect configurations"),
    "rewriteRuleSets": (400, "rewrite rule sets"),
}
PATH_RULES_PER_MAP = 100
ADDRESSES_PER_POOL = 1200
# the limit of every collection above whose own limit is 100, on a WAF_v2 gateway
# whose firewall runs CRS 3.1 or older
OLD_CRS_LIMIT = 40


def _old_crs(props: Mapping[str, Any]) -> str | None:
    """The Core Rule Set version of the gateway's own WAF when it is 3.1 or older."""
    if (props.get("sku") or {}).get("tier") != "WAF_v2":
        return None
    waf = props.get("webApplicationFirewallConfiguration") or {}
    version = str(waf.get("ruleSetVersion") or "")
    if not waf.get("enabled") or waf.get("ruleSetType", "OWASP") != "OWASP" or not version:
        return None
    try:
        numbers = tuple(int(part) for part in version.split("."))
    except ValueError:
        return None
    return version if numbers <= (3, 1) else None


def check(body: Mapping[str, Any]) -> str | None:
    """The first limit an Application Gateway body exceeds, as a message; None if none."""
    props = body.get("properties") or {}
    crs = _old_crs(props)
    for collection, (limit, what) in LIMITS.items():
        count = len(props.get(collection) or [])
        if crs is not None and limit == 100 and count > OLD_CRS_LIMIT:
            return (
                f"{count} {what} exceed the limit of {OLD_CRS_LIMIT} of a WAF_v2 Application "
                f"Gateway running the Core Rule Set {crs} (3.2 or newer lifts it to {limit})"
            )
        if count > limit:
            return f"{count} {what} exceed the Application Gateway v2 limit of {limit}"
    for path_map in props.get("urlPathMaps") or []:
        rules = (path_map.get("properties") or {}).get("pathRules") or []
        if len(rules) > PATH_RULES_PER_MAP:
            return (
                f"URL path map {path_map['name']} has {len(rules)} path rules; the Application "
                f"Gateway v2 limit is {PATH_RULES_PER_MAP}"
            )
    for pool in props.get("backendAddressPools") or []:
        addresses = (pool.get("properties") or {}).get("backendAddresses") or []
        if len(addresses) > ADDRESSES_PER_POOL:
            return (
                f"backend pool {pool['name']} has {len(addresses)} addresses; the Application "
                f"Gateway v2 limit is {ADDRESSES_PER_POOL}"
            )
    return None
