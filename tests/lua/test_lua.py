"""The Lua unit tests (tests/lua/test_*.lua), run by the Lua that NGINX runs.

One throwaway NGINX (no master process, a unix socket in a temporary
directory, no root needed) serves the tests: `/run?file=NAME` runs one test
file inside a request (runner.lua), so the router's modules use the real ngx
API; `/compile` compiles a router state as the data plane would. Each test file
is one pytest test, failing with the Lua failures it reports. The NGINX
finds its modules and the Lua C modules (cjson) where environment.host_paths
says this host keeps them, the paths the data plane's configuration names.

The contract between the two sides: every router state in the golden files
(built by the Python side, tests/golden/cases/*.nginx) must compile in the Lua.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agc_controller.providers.local.environment import host_paths
from agc_controller.providers.local.nginx import NGINX

HERE = Path(__file__).parent
TEST_FILES = sorted(HERE.glob("test_*.lua"))
GOLDEN_STATES = sorted((HERE.parent / "golden" / "cases").glob("*.nginx"))
_STATE_MARK = "# ----- dynamic state"


def _conf(tmp: Path, sock: Path) -> str:
    paths = host_paths()
    return f"""
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
load_module {paths.modules_dir}/ndk_http_module.so;
load_module {paths.modules_dir}/ngx_http_lua_module.so;
events {{ worker_connections 16; }}
http {{
  access_log off;
  lua_package_path "{paths.lua_dir}/?.lua;{HERE}/?.lua;/usr/share/lua/5.1/?.lua;;";
  lua_package_cpath "/usr/lib/{paths.multiarch}/lua/5.1/?.so;;";
  lua_shared_dict agc_config 1m;
  lua_shared_dict agc_ratelimit 1m;
  lua_shared_dict agc_health 1m;
  lua_shared_dict agc_inflight 1m;
  lua_shared_dict agc_metrics 1m;
  client_body_buffer_size 16m;
  server {{
    listen unix:{sock};
    location = /run {{
      {" ".join(f'set $agc_mirror{i} "";' for i in range(4))}
      content_by_lua_block {{ require("runner").run() }}
    }}
    location = /compile {{ content_by_lua_block {{ require("runner").compile() }} }}
  }}
}}
"""


class LuaNginx:
    def __init__(self, sock: Path) -> None:
        self.sock = sock

    def request(self, method: str, target: str, body: bytes = b"") -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(self.sock))
            head = f"{method} {target} HTTP/1.0\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
            s.sendall(head.encode() + body)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        response = b"".join(chunks).decode(errors="replace")
        status_line, _, rest = response.partition("\r\n")
        _, _, payload = rest.partition("\r\n\r\n")
        assert " 200 " in status_line, f"{status_line}\n{payload}"
        return payload


@pytest.fixture(scope="module")
def lua_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LuaNginx]:
    tmp = tmp_path_factory.mktemp("lua-nginx")
    sock = tmp / "t.sock"
    (tmp / "nginx.conf").write_text(_conf(tmp, sock))
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                assert process.stderr is not None
                pytest.fail(f"NGINX did not start: {process.stderr.read().decode()}")
            time.sleep(0.02)
        yield LuaNginx(sock)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if process.poll() is None:
            process.kill()


def test_there_are_lua_tests() -> None:
    assert TEST_FILES


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.stem)
def test_lua(path: Path, lua_nginx: LuaNginx) -> None:
    out = lua_nginx.request("GET", f"/run?file={path.stem}")
    summary = re.search(r"^total (\d+) failed (\d+)$", out, re.MULTILINE)
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert summary is not None, out
    assert int(summary[1]) > 0, f"{path.name} has no tests"
    assert not failures, "\n".join(failures)
    assert summary[2] == "0", out


def _states(golden: Path) -> list[str]:
    """The router state documents in a golden `.nginx` file, one per Gateway."""
    text = golden.read_text()
    decoder = json.JSONDecoder()
    states = []
    at = text.find(_STATE_MARK)
    while at != -1:
        document, _ = decoder.raw_decode(text, text.index("{", at))
        states.append(json.dumps(document))
        at = text.find(_STATE_MARK, at + 1)
    return states


@pytest.mark.parametrize("golden", GOLDEN_STATES, ids=lambda p: p.stem)
def test_golden_router_states_compile_in_lua(golden: Path, lua_nginx: LuaNginx) -> None:
    states = _states(golden)
    assert states, f"{golden.name} holds no router state"
    for state in states:
        assert lua_nginx.request("POST", "/compile", state.encode()).strip() == "ok"
