"""File paths in the static NGINX configuration: only unix sockets have a length
limit (108 bytes, sun_path); a data plane under a long state directory still
renders, its access log included."""

from __future__ import annotations

from pathlib import Path

import pytest

from agc_controller.providers.local.dynamic import Listen, StaticNeeds
from agc_controller.providers.local.environment import HostPaths, InstanceLayout
from agc_controller.providers.local.static import StaticSettings, UnsafeValue, render

HOST = HostPaths(
    modules_dir=Path("/usr/lib/nginx/modules"),
    lua_dir=Path("/usr/share/lua/5.1"),
    njs_dir=Path("/usr/share/njs"),
    multiarch="x86_64-linux-gnu",
)
NEEDS = StaticNeeds(listens=(Listen(port=80, https=False),), backend_tls=())
# as the conformance runner's: a temporary directory, then namespace_name of the Gateway
LONG_PREFIX = Path("/tmp/agc-conformance-dataplane-0bumjbp1") / (
    "gateway-conformance-infra_same-namespace-with-https-listener"
)


def test_a_long_state_directory_renders_and_logs_there() -> None:
    layout = InstanceLayout(prefix=LONG_PREFIX, socket_root=Path("/run/agc"), host=HOST)
    text, _ = render("127.0.0.1", NEEDS, layout, StaticSettings(access_log="file"))
    assert f"access_log {LONG_PREFIX}/access.log agc_json" in text


def test_a_socket_path_over_the_limit_is_refused_with_what_to_do() -> None:
    layout = InstanceLayout(prefix=LONG_PREFIX, socket_root=LONG_PREFIX, host=HOST)
    with pytest.raises(UnsafeValue, match="set a shorter AGC_SOCKET_DIR"):
        render("127.0.0.1", NEEDS, layout, StaticSettings())
