"""`agc-controller translate -o nginx`: what the local data plane would run.

Per Gateway: the static NGINX configuration and the dynamic state the router
would be sent, with certificates and keys replaced by digests (render.plain's
invariant: no key material in printed output).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agc_controller.core.errors import PermanentError
from agc_controller.core.status import ApplyResult
from agc_controller.providers.local import check_static, waf
from agc_controller.providers.local.dynamic import build_state
from agc_controller.providers.local.static import (
    HostPaths,
    InstanceLayout,
    StaticSettings,
    UnsafeValue,
    render,
)
from agc_controller.providers.local.waf import UnsafeWafValue, rule_set_id
from agc_controller.render.documents import Translations, pem_digest
from agc_controller.translate import GatewayTranslation

# where the files would live; only shown in the text
_STATE_DIR = Path("/var/lib/agc-controller/local")


def _redacted(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with PEM replaced by digests; otherwise the document as sent."""
    out = dict(doc)
    if "certs" in doc:
        out["certs"] = [{k: pem_digest(v) for k, v in c.items()} for c in doc["certs"]]
    if "cas" in doc:
        out["cas"] = [pem_digest(pem) for pem in doc["cas"]]
    return out


def local_results(gateways: Mapping[str, GatewayTranslation]) -> dict[str, ApplyResult]:
    """What the local provider would refuse (translate's dry run): a static
    configuration no NGINX would take, as its apply reports it. The rest needs a
    host (addresses, ports), which offline there is none of."""
    results = {}
    for key, translation in gateways.items():
        if translation.load_balancer is None:
            continue
        _, needs = build_state(translation.load_balancer)
        try:
            check_static(needs, StaticSettings())
        except PermanentError as e:
            results[key] = ApplyResult(programmed=False, reason=e.reason, message=str(e))
    return results


def render_nginx(translations: Translations, *, host: HostPaths, sockets: Path) -> str:
    """The text of `-o nginx`, as rendered on a host with `host`'s paths and
    its sockets under `sockets` (the golden tests fix both)."""
    out: list[str] = []
    for key, translation in translations.programmed_gateways().items():
        out.append(f"# ===== Gateway {key}")
        model = translation.load_balancer
        result = translations.result_for(translation)
        if model is None or result is None or not result.addresses:
            out.append("# not programmed (see -o status)\n")
            continue
        doc, needs = build_state(model)
        layout = InstanceLayout(
            prefix=_STATE_DIR / key.replace("/", "_"), socket_root=sockets, host=host
        )
        try:
            text, static_id = render(result.addresses[0].value, needs, layout, StaticSettings())
            rule_sets = [
                (layout.waf_rules(rule_set_id(rules)), waf.render(rules, layout.waf_audit_log))
                for rules in needs.waf
            ]
        except (UnsafeValue, UnsafeWafValue) as e:
            out.append(f"# refused by the local data plane: {e}\n")
            continue
        doc["static"] = static_id
        out += [
            f"# ----- {layout.conf}",
            text,
            *(line for path, rules in rule_sets for line in (f"# ----- {path}", rules)),
            f"# ----- dynamic state (sent to {layout.control_socket})",
            json.dumps(_redacted(doc), indent=2, sort_keys=True),
            "",
        ]
    return "\n".join(out)
