"""What this host provides to its data planes: where NGINX's modules, the Lua
libraries and the unix sockets are.

The one place of the local provider that reads the environment (variables,
the interpreter's build, the effective uid). The renderer (static.py) takes
what it finds as arguments, so it stays pure.
"""

from __future__ import annotations

import functools
import os
import platform
import sysconfig
import tempfile
from pathlib import Path

from agc_controller.providers.local.static import HostPaths, InstanceLayout

_PACKAGE_DIR = Path(__file__).parent


@functools.cache
def host_paths() -> HostPaths:
    """Debian's paths on this host's architecture."""
    return HostPaths(
        modules_dir=Path("/usr/lib/nginx/modules"),
        lua_dir=_PACKAGE_DIR / "lua",
        njs_dir=_PACKAGE_DIR / "njs",
        multiarch=multiarch(),
    )


def multiarch() -> str:
    """The multiarch triplet Debian installs architecture-specific libraries under.

    CPython records it at build time (MULTIARCH: Debian's own python3 and the
    official images alike); without it, the triplet of the GNU/Linux ports
    that name it after the machine (amd64: x86_64-linux-gnu, arm64:
    aarch64-linux-gnu).
    """
    configured = sysconfig.get_config_var("MULTIARCH")
    if isinstance(configured, str) and configured:
        return configured
    return f"{platform.machine()}-linux-gnu"


@functools.cache
def socket_root() -> Path:
    """Where data planes keep their unix sockets: a short path, since a socket's
    must fit in 107 bytes and a prefix holds a namespace and a Gateway name."""
    if configured := os.environ.get("AGC_SOCKET_DIR"):
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/run/agc-controller")
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / "agc-controller"
    return Path(tempfile.gettempdir()) / f"agc-controller-{os.geteuid()}"


def instance_layout(prefix: Path) -> InstanceLayout:
    """The layout of a data plane under `prefix` on this host."""
    return InstanceLayout(prefix=prefix, socket_root=socket_root(), host=host_paths())
