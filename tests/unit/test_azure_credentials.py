"""Which credential the azure provider signs in with (AGC_AZURE_CREDENTIAL)."""

from __future__ import annotations

import pytest
from azure.identity import CredentialUnavailableError
from azure.identity.aio import DefaultAzureCredential, WorkloadIdentityCredential

from agc_controller.providers.azure.credentials import Unavailable, azure_credential
from agc_controller.providers.azure.settings import AzureSettings

IN_A_POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}


async def test_in_a_pod_auto_is_workload_identity_alone() -> None:
    federated = {
        **IN_A_POD,
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000000a",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-00000000000b",
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in federated.items():
            mp.setenv(key, value)
        credential = azure_credential("auto", federated)
        assert isinstance(credential, WorkloadIdentityCredential)
        await credential.close()


async def test_a_pod_without_federation_cannot_sign_in_and_says_why() -> None:
    with pytest.MonkeyPatch.context() as mp:
        for key in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
            mp.delenv(key, raising=False)
        credential = azure_credential("auto", IN_A_POD)
    assert isinstance(credential, Unavailable)
    with pytest.raises(CredentialUnavailableError, match="workload identity is not configured"):
        await credential.get_token("https://management.azure.com/.default")


async def test_outside_a_cluster_auto_is_the_default_chain() -> None:
    credential = azure_credential("auto", {})
    assert isinstance(credential, DefaultAzureCredential)
    await credential.close()


def test_the_setting_is_checked() -> None:
    assert AzureSettings.from_env({"AGC_AZURE_CREDENTIAL": "managed-identity"}).credential == (
        "managed-identity"
    )
    with pytest.raises(ValueError, match="AGC_AZURE_CREDENTIAL must be one of"):
        AzureSettings.from_env({"AGC_AZURE_CREDENTIAL": "node"})
