"""Opt-in: the azure provider against a real Application Gateway.

What only a real subscription can settle, which the ARM test server cannot: does
ARM take the PFX the provider packages (3DES, SHA-1 MAC, a hex password), the
request-header server variable of a name with dashes in a rewrite, and a stale
If-Match (412)? Run, with an Application Gateway v2 you may change:

    AGC_LIVE_AZURE=1 AGC_AZURE_SUBSCRIPTION_ID=<id> AGC_AZURE_RESOURCE_GROUP=<rg> \\
    AGC_AZURE_APPLICATION_GATEWAY=<name> AGC_AZURE_CREDENTIAL=default \\
        .venv/bin/python -m pytest -q tests/azure/test_live.py

The tests add the children of a Gateway of their own (`agc-<tag>-…`, on port
443 for a host name of their own, so no listener of yours is touched) and delete
them at the end. Without AGC_LIVE_AZURE they are skipped: a skipped test is
never counted as a passing one.
"""

from __future__ import annotations

import os
import uuid

import attrs
import pytest

from agc_controller.core.keys import ObjectKey
from agc_controller.providers.azure import AzureProvider, AzureSettings
from agc_controller.providers.azure.arm import ArmClient, ArmConflict
from agc_controller.providers.azure.credentials import azure_credential
from agc_controller.providers.azure.settings import Target
from agc_controller.translate.model import Certificate, Frontend, HeaderModifier, LoadBalancer
from tests.azure.models import model
from tests.e2e.certs import CertificateAuthority

pytestmark = pytest.mark.skipif(
    not os.environ.get("AGC_LIVE_AZURE"),
    reason="live Azure: set AGC_LIVE_AZURE=1 and AGC_AZURE_* (see tests/azure/test_live.py)",
)


def _live_model() -> LoadBalancer:
    """An HTTPS listener with a certificate of its own, and a rule adding a header whose
    name has dashes (a rewrite on the header's server variable)."""
    name = f"agc-live-{uuid.uuid4().hex[:8]}"
    host = f"{name}.example.com"
    issued = CertificateAuthority("agc-live").issue(host)
    certificate = Certificate(
        secret=ObjectKey("Secret", "default", name),
        cert_pem=issued.cert_pem,
        key_pem=issued.key_pem,
    )
    base = model(name, hostname=host, port=443)
    rule = attrs.evolve(
        base.hosts[0].rules[0],
        request_headers=HeaderModifier(add=(("X-Agc-Live", "1"),)),
    )
    return attrs.evolve(
        base,
        frontends=(
            Frontend(
                name="https", port=443, protocol="HTTPS", hostname=host, certificates=(certificate,)
            ),
        ),
        hosts=(attrs.evolve(base.hosts[0], listener="https", rules=(rule,)),),
    )


async def test_arm_takes_our_pfx_and_a_dashed_header_rewrite() -> None:
    settings = AzureSettings.from_env()
    live = _live_model()
    async with AzureProvider(settings=settings) as provider:
        try:
            result = await provider.apply(live)
            assert result.programmed, result.message
        finally:
            await provider.delete(live.gateway)


async def test_a_stale_if_match_is_refused() -> None:
    settings = AzureSettings.from_env()
    target = Target(settings.subscription_id, settings.resource_group, settings.application_gateway)
    credential = azure_credential(settings.credential)
    client = ArmClient(credential=credential, settings=settings)
    try:
        gateway = await client.get_gateway(target)
        # the same body with an ETag it no longer has: if If-Match is honoured, 412;
        # if not, the unchanged body is simply written again
        with pytest.raises(ArmConflict):
            await client.put_gateway(target, gateway, 'W/"00000000-0000-0000-0000-000000000000"')
    finally:
        await client.close()
        await credential.close()
