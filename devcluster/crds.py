"""Install the Gateway API CRDs (one channel) and our own, and wait until they are served."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from agc_controller.kube import server_side_apply

CHANNELS = ("standard", "experimental")
# agc-controller's own CRDs (policies), in the repository
OWN_CRDS = Path(__file__).resolve().parents[1] / "crds"
# measured: ~5 s after a server-side apply on a 2-core machine
_ESTABLISHED_WITHIN_SECONDS = 60.0


def load_crds(directory: Path) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the YAML files of `directory`, sorted by name.

    Other kinds (the release's ValidatingAdmissionPolicy guarding upgrades) are
    left out: a fresh control plane has nothing to upgrade.
    """
    crds = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return sorted(crds, key=lambda d: str(d["metadata"]["name"]))


async def install_gateway_api_crds(
    api: client.ApiClient, crds_dir: Path, *, channel: str = "standard"
) -> list[str]:
    """Apply the channel's CRDs and wait until each is Established. Returns their names."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown Gateway API channel {channel!r}; choose one of {CHANNELS}")
    crds = load_crds(crds_dir / channel)
    if not crds:
        raise FileNotFoundError(f"no CRDs in {crds_dir / channel}; run `make testenv`")
    return await install_crds(api, crds)


async def install_own_crds(api: client.ApiClient) -> list[str]:
    """Apply agc-controller's own CRDs (the repository's crds/) and wait until served."""
    return await install_crds(api, load_crds(OWN_CRDS))


async def install_crds(api: client.ApiClient, crds: list[dict[str, Any]]) -> list[str]:
    """Apply `crds` and wait until each is Established. Returns their names."""
    for crd in crds:
        await server_side_apply(api, crd, plural="customresourcedefinitions")
    names = [str(crd["metadata"]["name"]) for crd in crds]
    extensions = client.ApiextensionsV1Api(api)
    async with asyncio.timeout(_ESTABLISHED_WITHIN_SECONDS):
        for name in names:
            while not _established(await extensions.read_custom_resource_definition(name)):
                await asyncio.sleep(0.2)
    return names


def _established(crd: Any) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)
