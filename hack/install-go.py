#!/usr/bin/env python3
"""Install a pinned Go toolchain from the Go module proxy.

The Go module proxy serves every Go release as the module golang.org/toolchain
(version v0.0.1-go<release>.<os>-<arch>): that is where `GOTOOLCHAIN` fetches a
toolchain from. A Go older than 1.21 (Debian 12's golang-go is 1.19) cannot
switch toolchains, and a machine without Go has nothing to switch: this script
does by hand what the go command would do, from the same proxy, and checks the
module zip against its go.sum hash (as the checksum database gives it, pinned
below) before anything in it is unpacked.

    install-go.py go1.26.8 DEST     installs into DEST/go1.26.8 (bin/go ...)

A second run finds DEST/go1.26.8 and does nothing. Standard library only: it
runs before the project's virtual environment exists.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

# go.sum hashes (dirhash "h1") of golang.org/toolchain@v0.0.1-<release>.<platform>,
# from sum.golang.org
SUMS = {
    ("go1.26.8", "linux-amd64"): "h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=",
    ("go1.26.8", "linux-arm64"): "h1:sYL/O6MqS68ML0kjsQ36WoYIpJqkw60TxizWUYUKQMc=",
}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def say(message: str) -> None:
    print(f"[go] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    print(f"[go] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def proxy() -> str:
    """The first HTTP(S) proxy of $GOPROXY, as the go command would use it."""
    for entry in os.environ.get("GOPROXY", "").replace("|", ",").split(","):
        if entry.startswith(("https://", "http://")):
            return entry.rstrip("/")
    return "https://proxy.golang.org"


def dirhash(archive: zipfile.ZipFile) -> str:
    """The go.sum hash of a module zip (golang.org/x/mod/sumdb/dirhash Hash1): a
    SHA-256 over "<sha256 hex>  <name>\\n" for each file, in name order."""
    summary = hashlib.sha256()
    for name in sorted(archive.namelist()):
        if name.endswith("/"):
            continue
        # whole: typeshed types ZipFile.open() as IO[bytes], which file_digest() does not
        # take; the largest file of a toolchain zip (a binary) is a few tens of MB
        digest = hashlib.sha256(archive.read(name)).hexdigest()
        summary.update(f"{digest}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def download(url: str, to: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, to.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, shown = 0, -1
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            tenth = done * 10 // total if total else -1
            if tenth != shown and tenth >= 0:
                shown = tenth
                say(f"  {done >> 20} of {total >> 20} MB")


def unpack(archive: zipfile.ZipFile, prefix: str, into: Path) -> None:
    """The module's files under `into`. Module zips keep no file modes: like the go
    command, mark everything under bin/ and pkg/tool/ executable."""
    for info in archive.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        relative = info.filename[len(prefix) :]
        target = into / relative
        if ".." in Path(relative).parts:
            fail(f"the toolchain zip holds an unsafe path {info.filename!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        executable = relative.startswith(("bin/", "pkg/tool/"))
        target.chmod(0o755 if executable else 0o644)


def main() -> None:
    if len(sys.argv) != 3:
        fail("usage: install-go.py RELEASE DEST (e.g. go1.26.8 ~/.cache/agc-controller/go)")
    release, dest = sys.argv[1], Path(sys.argv[2])
    home = dest / release
    if (home / "bin" / "go").exists():
        return
    arch = _ARCH.get(platform.machine().lower())
    if sys.platform != "linux" or arch is None:
        fail(f"no pinned Go toolchain for {sys.platform}/{platform.machine()}; install Go 1.26.")
    plat = f"linux-{arch}"
    expected = SUMS.get((release, plat))
    if expected is None:
        fail(f"no checksum pinned for {release} {plat}; add it to SUMS from sum.golang.org.")
    version = f"v0.0.1-{release}.{plat}"
    url = f"{proxy()}/golang.org/toolchain/@v/{version}.zip"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        zipped = Path(tmp) / "toolchain.zip"
        say(f"downloading {release} ({plat}, about 70 MB) from the Go module proxy: {url}")
        try:
            download(url, zipped)
        except OSError as e:
            fail(f"could not download {url}: {e}. Check that the Go module proxy is reachable.")
        with zipfile.ZipFile(zipped) as archive:
            found = dirhash(archive)
            if found != expected:
                fail(f"the toolchain zip's checksum is {found}, not the pinned {expected}.")
            say("checksum verified; unpacking")
            staged = Path(tmp) / release
            unpack(archive, f"golang.org/toolchain@{version}/", staged)
        staged.rename(home)
    say(f"installed {release} in {home}")


if __name__ == "__main__":
    main()
