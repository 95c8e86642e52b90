"""`agc-controller translate`: files in, the ALB model and statuses out, no cluster."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agc_controller import render
from agc_controller.cli import main
from tests.golden.test_golden import RESULT

GOLDEN = Path(__file__).parent.parent / "golden" / "cases"
TLS_CASE = GOLDEN / "gateway-listener-certificate-cross-namespace-grant.in.yaml"

BASIC = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: agc}
spec: {controllerName: agc-controller.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: agc
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None, str]:
    code = main(["translate", *argv])
    out, err = capsys.readouterr()
    return code, yaml.safe_load(out) if out else None, err


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    path = tmp_path / "basic.yaml"
    path.write_text(BASIC)
    return path


def programmed(gateway: dict[str, Any]) -> str:
    conditions = gateway["status"]["conditions"]
    return str(next(c["status"] for c in conditions if c["type"] == "Programmed"))


def test_all_shows_model_and_statuses_defaulting_the_namespace(
    capsys: pytest.CaptureFixture[str], basic: Path
) -> None:
    code, doc, err = run(capsys, "-f", str(basic))
    assert code == 0
    assert doc is not None
    gateway = doc["gateways"]["default/gw"]
    assert programmed(gateway) == "True"
    assert gateway["model"]["gateway"]["name"] == "gw"
    assert gateway["routes"][0]["name"] == "web"
    assert doc["gatewayClasses"]["agc"]["conditions"][0]["status"] == "True"
    assert "ignored basic.yaml: document 5: kind Deployment" in err.replace(
        str(basic.parent) + "/", ""
    )


def test_model_and_status_outputs_are_the_parts(
    capsys: pytest.CaptureFixture[str], basic: Path
) -> None:
    _, model, _ = run(capsys, "-f", str(basic), "-o", "model")
    _, status, _ = run(capsys, "-f", str(basic), "-o", "status")
    assert model is not None
    assert status is not None
    assert set(model) == {"gateways"}
    assert model["gateways"]["default/gw"]["frontends"][0]["port"] == 80
    assert "model" not in status["gateways"]["default/gw"]
    assert programmed(status["gateways"]["default/gw"]) == "True"


@pytest.mark.parametrize(
    ("case", "provider"),
    [
        ("local-httproute-retry-and-session-persistence", "local"),
        ("local-backendtlspolicy-san", "local"),
        ("azure-httproute-unsupported-matches", "azure"),
    ],
)
def test_output_matches_the_golden_serializer(
    capsys: pytest.CaptureFixture[str], case: str, provider: str
) -> None:
    # one implementation: the CLI and the golden files (translated with the
    # provider's settings their names ask for) cannot drift apart
    code, doc, _ = run(capsys, "-f", str(GOLDEN / f"{case}.in.yaml"), "--provider", provider)
    assert code == 0
    assert RESULT == render.ASSUMED_RESULT
    assert doc == yaml.safe_load((GOLDEN / f"{case}.out.yaml").read_text())


def test_the_provider_decides_what_is_accepted_and_programmed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A header match is a local feature and an azure refusal (on the route); a
    listener with AllowInsecureFallback is programmed locally, and refused by the
    azure provider on that listener."""
    case = str(GOLDEN / "azure-httproute-unsupported-matches.in.yaml")
    _, local, _ = run(capsys, "-f", case, "-o", "status")
    _, azure, _ = run(capsys, "-f", case, "-o", "status", "--provider", "azure")
    assert local is not None
    assert azure is not None
    assert local != azure
    code, _, err = run(capsys, "-f", case, "-o", "arm", "--provider", "local")
    assert code == 2
    assert "--provider azure" in err
    fallback = tmp_path / "fallback.yaml"
    fallback.write_text(
        (GOLDEN / "gateway-frontend-validation-insecure-fallback.in.yaml").read_text()
        + """
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: https}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
"""
    )
    _, local, _ = run(capsys, "-f", str(fallback), "-o", "status")
    _, azure, _ = run(capsys, "-f", str(fallback), "-o", "status", "--provider", "azure")
    assert local is not None
    assert azure is not None

    def listener_programmed(doc: dict[str, Any]) -> set[str]:
        (gateway,) = doc["gateways"].values()
        return {
            cond["status"]
            for listener in gateway["status"]["listeners"]
            for cond in listener["conditions"]
            if cond["type"] == "Programmed"
        }

    assert listener_programmed(local) == {"True"}
    assert "False" in listener_programmed(azure)


def test_certificates_and_keys_appear_only_as_digests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["translate", "-f", str(TLS_CASE), "-o", "model"]) == 0
    out = capsys.readouterr().out
    assert "sha256:" in out
    assert "BEGIN" not in out
    for doc in yaml.safe_load_all(TLS_CASE.read_text()):
        if doc and doc.get("kind") == "Secret":
            for encoded in doc.get("data", {}).values():
                assert base64.b64decode(encoded).decode()[40:80] not in out


def test_reads_stdin_and_several_files(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    classes, rest = BASIC.split("---", 1)
    (tmp_path / "class.yaml").write_text(classes)
    monkeypatch.setattr("sys.stdin", io.StringIO(rest))
    code, doc, _ = run(capsys, "-f", str(tmp_path / "class.yaml"), "-f", "-", "-n", "apps")
    assert code == 0
    assert doc is not None
    assert programmed(doc["gateways"]["apps/gw"]) == "True"


def test_a_kind_list_is_flattened(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    items = [d for d in yaml.safe_load_all(BASIC) if d]
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    code, doc, _ = run(capsys, "-f", str(path))
    assert code == 0
    assert doc is not None
    assert programmed(doc["gateways"]["default/gw"]) == "True"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: Gateway\nmetadata: {name: [unclosed\n", "invalid YAML"),
        ("- just\n- a list\n", "document 1: expected a Kubernetes object"),
        ("kind: Gateway\nspec: {}\n", "document 1: the Gateway has no metadata.name"),
        ("metadata: {name: x}\n", "document 1: the object has no kind"),
        ("kind: List\nitems: 3\n", "a List without an items list"),
    ],
)
def test_bad_input_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, doc, err = run(capsys, "-f", str(path))
    assert code == 1
    assert doc is None
    assert f"{path}: " in err
    assert message in err


def test_unreadable_file_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "-f", str(tmp_path / "missing.yaml"))
    assert code == 1
    assert "missing.yaml: cannot read: No such file or directory" in err


def test_says_when_no_gateway_class_is_ours(
    capsys: pytest.CaptureFixture[str], basic: Path
) -> None:
    code, doc, err = run(capsys, "-f", str(basic), "--controller-name", "example.com/other")
    assert code == 0
    assert doc is not None
    assert doc["gatewayClasses"] == {}
    assert "no GatewayClass in the input has controllerName example.com/other" in err


def test_providers_add_outputs_through_the_registry(
    capsys: pytest.CaptureFixture[str], basic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "_OUTPUTS", dict(render.outputs()))
    render.register_output(
        "count", lambda t: f"{len(t.gateways)} gateways\n", help="how many Gateways"
    )
    assert main(["translate", "-f", str(basic), "-o", "count"]) == 0
    assert capsys.readouterr().out == "1 gateways\n"
    with pytest.raises(ValueError, match="already registered"):
        render.register_output("count", lambda t: "", help="again")


def test_nginx_output_is_the_local_data_plane_config_and_state(
    capsys: pytest.CaptureFixture[str], basic: Path, tmp_path: Path
) -> None:
    assert main(["translate", "-f", str(basic), "-o", "nginx"]) == 0
    out = capsys.readouterr().out
    assert "# ===== Gateway default/gw" in out
    assert "listen 192.0.2.1:80 reuseport;" in out
    state = json.loads(out[out.index("{", out.index("# ----- dynamic state")) :])
    first = state["hosts"]["http"][0]["rules"][0]
    assert state["rules"][first]["route"] == "default/web"
    assert "js_preread" not in out  # no gRPC, no protocol sniffer

    grpc = tmp_path / "grpc.yaml"
    grpc.write_text(BASIC.replace("kind: HTTPRoute", "kind: GRPCRoute"))
    assert main(["translate", "-f", str(grpc), "-o", "nginx"]) == 0
    out = capsys.readouterr().out
    assert "js_preread agc.sniff;" in out
    assert re.search(r"listen unix:/\S+/h2c-80\.sock http2 proxy_protocol", out)

    # an h2c backend: its clients speak h2c to the gateway too
    h2c = tmp_path / "h2c.yaml"
    h2c.write_text(
        BASIC.replace(
            "spec: {ports: [{port: 80}]}",
            "spec: {ports: [{port: 80, appProtocol: kubernetes.io/h2c}]}",
        )
    )
    assert main(["translate", "-f", str(h2c), "-o", "nginx"]) == 0
    assert "js_preread agc.sniff;" in capsys.readouterr().out

    assert main(["translate", "-f", str(TLS_CASE), "-o", "nginx"]) == 0
    out = capsys.readouterr().out
    assert "ssl_certificate_by_lua_block" in out
    assert "BEGIN" not in out
    assert "sha256:" in out


def test_arm_output_is_translated_with_the_azure_capabilities(
    capsys: pytest.CaptureFixture[str], basic: Path, tmp_path: Path
) -> None:
    code, doc, _ = run(capsys, "-f", str(basic), "-o", "arm")
    assert code == 0
    assert doc is not None
    assert doc["gateways"] == {"default/gw": "programmed"}
    body = doc["applicationGateway"]["properties"]
    assert [p["properties"]["port"] for p in body["frontendPorts"]] == [80]
    assert len(body["requestRoutingRules"]) == 1

    # Application Gateway cannot match headers: under the azure capabilities
    # the rule is refused (the route's status says so), so nothing routes
    headers = tmp_path / "headers.yaml"
    headers.write_text(
        BASIC.replace(
            "rules: [{backendRefs:",
            "rules: [{matches: [{headers: [{name: x, value: y}]}], backendRefs:",
        )
    )
    code, doc, _ = run(capsys, "-f", str(headers), "-o", "arm")
    assert code == 0
    assert doc is not None
    assert "requestRoutingRules" not in doc["applicationGateway"]["properties"]
    code, doc, _ = run(capsys, "-f", str(headers), "-o", "model")
    assert doc is not None
    assert doc["gateways"]["default/gw"]["hosts"][0]["rules"]  # the default settings keep it


def test_a_service_shared_by_http_and_grpc_routes_keeps_both_protocols(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    both = tmp_path / "both.yaml"
    grpc_route = """
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: web-grpc}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.example.com]
  rules: [{backendRefs: [{name: web, port: 80}]}]
"""
    both.write_text(BASIC + "---" + grpc_route)
    assert main(["translate", "-f", str(both), "-o", "nginx"]) == 0
    out = capsys.readouterr().out
    state = json.loads(out[out.index("{", out.index("# ----- dynamic state")) :])
    protocols = {name: backend["protocol"] for name, backend in state["backends"].items()}
    assert protocols == {"default/web:80": "http", "default/web:80#h2c": "h2c"}
