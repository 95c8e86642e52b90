"""Frontend IP configurations and frontend ports.

Frontend IP configurations belong to the Application Gateway's owner (they tie
it to a public IP resource or a subnet), so the controller never creates or
changes them: a Gateway picks the existing public one, private one, or both
(annotation `azure.agc-controller.io/frontend`: public | private | both), and
gets one Application Gateway listener per chosen frontend.

Frontend ports are shared by every listener on a port number: an existing port
(anyone's) is reused, otherwise the controller owns `agc-port-<n>`, which lives
as long as a listener refers to it (ARM refuses two ports with one number).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import properties

FrontendMode = Literal["public", "private", "both"]
FRONTEND_MODES: tuple[FrontendMode, ...] = ("public", "private", "both")


@attrs.frozen
class FrontendIp:
    # "public" or "private": part of listener names, so a Gateway's listeners differ per frontend
    label: str
    id: str
    # the private IP address, or the ID of the public IP address resource
    private_address: str | None = None
    public_ip_id: str | None = None


def frontend_ips(current: Mapping[str, Any]) -> dict[str, FrontendIp]:
    """The first public and first private frontend IP configuration (by name), by label."""
    found: dict[str, FrontendIp] = {}
    configs = (current.get("properties") or {}).get("frontendIPConfigurations") or []
    for config in sorted(configs, key=lambda c: str(c.get("name"))):
        props = properties(config)
        public = (props.get("publicIPAddress") or {}).get("id")
        if public:
            found.setdefault("public", FrontendIp("public", str(config["id"]), public_ip_id=public))
        elif props.get("privateIPAddress"):
            found.setdefault(
                "private",
                FrontendIp(
                    "private", str(config["id"]), private_address=str(props["privateIPAddress"])
                ),
            )
    return found


def select(
    available: Mapping[str, FrontendIp], mode: FrontendMode
) -> tuple[tuple[FrontendIp, ...], str | None]:
    """The frontends a Gateway asked for, or why it cannot have them."""
    wanted = ("public", "private") if mode == "both" else (mode,)
    missing = [label for label in wanted if label not in available]
    if missing:
        return (), (
            f"the Application Gateway has no {' and no '.join(missing)} frontend IP "
            f"configuration (frontend mode {mode!r})"
        )
    return tuple(available[label] for label in wanted), None


def port_names(current: Mapping[str, Any]) -> dict[int, str]:
    """Port number -> the frontend port to use: an existing one not owned by a Gateway
    (including our shared ones), else our shared name."""
    names: dict[int, str] = {}
    for port in (current.get("properties") or {}).get("frontendPorts") or []:
        name = str(port["name"])
        if naming.owner_tag(name) is None:
            names.setdefault(int(properties(port)["port"]), name)
    return names


def port_name(existing: Mapping[int, str], port: int) -> str:
    return existing.get(port) or naming.shared_port_name(port)
