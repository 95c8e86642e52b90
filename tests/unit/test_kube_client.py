"""The API client: the proxy is looked up once, from the environment, as client-go does."""

from __future__ import annotations

from pathlib import Path

import pytest

from agc_controller.kube import api_client_from_kubeconfig

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://api.example.test:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: t}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


@pytest.mark.parametrize(
    ("env", "proxy"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://proxy.test:3128"}, "http://proxy.test:3128"),
        ({"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": ".example.test"}, None),
        ({"HTTP_PROXY": "http://proxy.test:3128"}, None),
    ],
)
async def test_the_proxy_comes_from_the_environment_once(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], proxy: str | None
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    async with await api_client_from_kubeconfig(kubeconfig) as api:
        assert api.rest_client.proxy == proxy
        # no per-request look at the environment or ~/.netrc
        assert not api.rest_client.pool_manager.trust_env
