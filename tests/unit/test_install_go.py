"""hack/install-go.py: the go.sum hash of a module zip, and an install from a
module proxy (a local one here) that refuses a zip whose hash is not the pinned one."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

HACK = Path(__file__).resolve().parents[2] / "hack" / "install-go.py"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def install_go() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_go", HACK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dirhash_is_the_go_sum_hash(install_go: ModuleType) -> None:
    # go.sum: github.com/josharian/intern v1.0.0 h1:vlS4z54oSdjm0bgjRigI+G1HpF+tI+9rE5LLzOg8HmY=
    with zipfile.ZipFile(DATA / "intern-v1.0.0.zip") as archive:
        assert install_go.dirhash(archive) == "h1:vlS4z54oSdjm0bgjRigI+G1HpF+tI+9rE5LLzOg8HmY="


def _toolchain_zip(version: str, go: bytes) -> bytes:
    prefix = f"golang.org/toolchain@{version}/"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(prefix + "bin/go", go)
        archive.writestr(prefix + "pkg/tool/linux_amd64/compile", b"compile")
        archive.writestr(prefix + "src/fmt/print.go", b"package fmt")
    return out.getvalue()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A module proxy on loopback serving files from a directory."""
    root = tmp_path / "proxy"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("tampered", [False, True])
def test_install_from_the_proxy_checks_the_pinned_hash(
    install_go: ModuleType,
    proxy: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tampered: bool,
) -> None:
    url, root = proxy
    plat = f"linux-{install_go._ARCH[os.uname().machine.lower()]}"
    version = f"v0.0.1-go9.9.9.{plat}"
    pinned = _toolchain_zip(version, b"#!/bin/sh\necho go9.9.9\n")
    with zipfile.ZipFile(io.BytesIO(pinned)) as archive:
        monkeypatch.setitem(install_go.SUMS, ("go9.9.9", plat), install_go.dirhash(archive))
    served = _toolchain_zip(version, b"#!/bin/sh\necho evil\n") if tampered else pinned
    (root / "golang.org" / "toolchain" / "@v").mkdir(parents=True)
    (root / "golang.org" / "toolchain" / "@v" / f"{version}.zip").write_bytes(served)
    monkeypatch.setenv("GOPROXY", f"off,{url},direct")
    monkeypatch.setattr("sys.argv", ["install-go.py", "go9.9.9", str(tmp_path / "go")])
    if tampered:
        with pytest.raises(SystemExit) as exited:
            install_go.main()
        assert exited.value.code == 1
        assert not (tmp_path / "go" / "go9.9.9").exists()
        return
    install_go.main()
    home = tmp_path / "go" / "go9.9.9"
    assert (home / "bin" / "go").read_bytes() == b"#!/bin/sh\necho go9.9.9\n"
    assert os.access(home / "bin" / "go", os.X_OK)
    assert os.access(home / "pkg" / "tool" / "linux_amd64" / "compile", os.X_OK)
    assert not os.access(home / "src" / "fmt" / "print.go", os.X_OK)
    # installed once: a second run does not download again
    (root / "golang.org" / "toolchain" / "@v" / f"{version}.zip").unlink()
    install_go.main()
