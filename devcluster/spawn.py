"""Starting the dev cluster's own Python modules (`python -m devcluster.…`) as processes.

devcluster is not installed (the wheel leaves it out), so a child process finds
it only through PYTHONPATH, whatever its working directory: every spawn of a
devcluster module (or of the tests' helper servers) takes its environment or
its argv from here, both of which name the repository root.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def python_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: our environment) with the repository root first on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    paths = [str(REPO_ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def python_module_argv(module: str) -> list[str]:
    """argv of `python -m module` that sets PYTHONPATH itself (through env(1)): for a
    process whose environment is not ours, such as a node agent's container, which
    gets its pod's."""
    env = shutil.which("env") or "/usr/bin/env"
    return [env, f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m", module]
