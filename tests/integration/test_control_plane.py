"""Proof that the test control plane is the real thing: CEL validation from the
Gateway API CRDs, RBAC with service-account tokens, kube-controller-manager's
controllers, and watches that resume from a resourceVersion."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.rest import ApiException

from devcluster import ControlPlane

GW = "gateway.networking.k8s.io"


def _httproute(name: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [rule]},
    }


async def _create_route(kube: client.ApiClient, namespace: str, route: dict[str, Any]) -> Any:
    return await client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GW, "v1", namespace, "httproutes", route
    )


async def test_httproute_path_must_start_with_slash(kube: client.ApiClient, namespace: str) -> None:
    route = _httproute("bad-path", {"matches": [{"path": {"type": "PathPrefix", "value": "foo"}}]})
    with pytest.raises(ApiException) as raised:
        await _create_route(kube, namespace, route)
    assert raised.value.status == 422
    assert "must be an absolute path" in json.loads(raised.value.body)["message"]


async def test_httproute_redirect_and_rewrite_in_one_rule_rejected(
    kube: client.ApiClient, namespace: str
) -> None:
    route = _httproute(
        "redirect-and-rewrite",
        {
            "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}},
                {"type": "URLRewrite", "urlRewrite": {"hostname": "example.com"}},
            ]
        },
    )
    with pytest.raises(ApiException) as raised:
        await _create_route(kube, namespace, route)
    assert raised.value.status == 422
    causes = json.loads(raised.value.body)["details"]["causes"]
    assert any(
        c["field"] == "spec.rules[0].filters" and "but not both" in c["message"] for c in causes
    ), causes


async def test_valid_httproute_is_stored(kube: client.ApiClient, namespace: str) -> None:
    route = _httproute("good", {"matches": [{"path": {"type": "PathPrefix", "value": "/foo"}}]})
    stored = await _create_route(kube, namespace, route)
    # defaults from the CRD schema are applied by the server
    assert stored["spec"]["rules"][0]["matches"][0]["path"] == {
        "type": "PathPrefix",
        "value": "/foo",
    }
    assert stored["spec"]["parentRefs"][0]["group"] == GW


async def test_rbac_denies_a_service_account_without_bindings(
    kube: client.ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    core = client.CoreV1Api(kube)
    await core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = await core.create_namespaced_service_account_token(
        "nobody",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    )
    configuration = client.Configuration(host=control_plane.server)
    configuration.ssl_ca_cert = str(control_plane.pki.ca.cert)
    configuration.api_key = {"BearerToken": token.status.token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    async with client.ApiClient(configuration) as as_nobody:
        with pytest.raises(ApiException) as raised:
            await client.CoreV1Api(as_nobody).list_namespaced_pod(namespace)
    assert raised.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in raised.value.body


async def test_watch_from_resource_version_sees_later_update(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    created = await core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"v": "1"}),
    )
    await core.patch_namespaced_config_map("cm", namespace, {"data": {"v": "2"}})
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=created.metadata.resource_version,
        timeout_seconds=10,
    )
    async with asyncio.timeout(15):
        async for event in stream:
            assert event["object"].metadata.name == "cm"
            assert event["type"] == "MODIFIED"
            assert event["object"].data == {"v": "2"}
            break
        else:
            pytest.fail("the watch ended without the update")


@pytest.mark.usefixtures("controller_manager")
async def test_deployment_gets_replicaset_and_pods(kube: client.ApiClient, namespace: str) -> None:
    labels = {"app": "echo"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="echo"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="echo", image="echo")]),
            ),
        ),
    )
    await client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment)
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    async with asyncio.timeout(30):
        while True:
            replicasets = (await apps.list_namespaced_replica_set(namespace)).items
            pods = (await core.list_namespaced_pod(namespace, label_selector="app=echo")).items
            if replicasets and len(pods) == 2:
                break
            await asyncio.sleep(0.2)
    assert replicasets[0].metadata.owner_references[0].name == "echo"
    assert {p.metadata.owner_references[0].name for p in pods} == {replicasets[0].metadata.name}
