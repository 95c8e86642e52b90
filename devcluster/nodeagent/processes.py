"""Container processes: how a container is launched (program, argv, environment,
mounts), started in its pod's namespaces, and stopped.

A container is `setpriv --pdeathsig KILL` → `ip netns exec <pod>` → `unshare
--uts` → a wrapper sh that sets the hostname and bind-mounts the volumes, then
execs the program. Its stdout and stderr go through pipes to a ContainerOutput.

Invariants: every container process leads its own session, so signalling its
process group reaches its children too; a process the agent loses track of
still dies with the agent (PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import shlex
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from agc_controller.informers import KubeObject
from devcluster.nodeagent.api import Api
from devcluster.nodeagent.crilog import LOG_DRAIN_GRACE, ContainerOutput
from devcluster.nodeagent.env import container_env
from devcluster.nodeagent.podspec import ConfigError, expand, image_repository
from devcluster.nodeagent.volumes import Mount, Volume, mounts


@attrs.frozen
class HostTools:
    """Absolute paths of the programs containers are started with."""

    ip: str
    unshare: str
    setpriv: str
    nsenter: str
    mount: str
    mkdir: str
    sh: str

    @classmethod
    def find(cls) -> HostTools:
        names = [field.name for field in attrs.fields(cls)]
        found = {name: shutil.which(name) for name in names}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise RuntimeError(
                f"the node agent needs {', '.join(missing)} on PATH (iproute2, util-linux)"
            )
        return cls(**{name: str(path) for name, path in found.items()})


@attrs.frozen
class Launch:
    """Everything a container's process is started with."""

    argv: tuple[str, ...]
    env: dict[str, str]
    mounts: tuple[Mount, ...]
    working_dir: str
    image_id: str
    # argv[0] with every symbolic link resolved: the file a mount may hide
    executable: str


async def launch_for(
    api: Api,
    pod: KubeObject,
    spec: Mapping[str, Any],
    *,
    images: Mapping[str, tuple[str, ...]],
    volumes: Mapping[str, Volume],
    pod_ip: str,
    host_ip: str,
) -> Launch:
    """How to start container `spec` of `pod` now: its image's program (`images`: by
    repository), command and args expanded, environment, mounts of `volumes`."""
    image = str(spec.get("image", ""))
    repository = image_repository(image)
    entrypoint = images.get(repository)
    if entrypoint is None:
        mapped = ", ".join(sorted(images)) or "none"
        raise ConfigError(
            "ImageNotMapped",
            f'image "{image}" (repository "{repository}") is not mapped to a program '
            f"on this node; mapped repositories: {mapped}",
        )
    env = await container_env(api, pod, spec, pod_ip=pod_ip, host_ip=host_ip)
    command = [expand(arg, env) for arg in spec.get("command") or []]
    argv = command or list(entrypoint)
    executable = find_executable(argv[0])
    if executable is None:
        raise ConfigError(
            "CommandNotFound", f'executable "{argv[0]}" was not found on the host PATH'
        )
    args = [expand(arg, env) for arg in spec.get("args") or []]
    return Launch(
        argv=(executable, *argv[1:], *args),
        env=env,
        mounts=mounts(spec, volumes, env),
        working_dir=str(spec.get("workingDir") or "/"),
        image_id=f"agc-local://{repository}",
        executable=real_path(executable),
    )


@attrs.define(eq=False)
class Processes:
    """The node's container processes: started in a pod's namespaces, stopped by
    process group."""

    tools: HostTools
    # every container process alive; kill_all() SIGKILLs what is left
    alive: set[asyncio.subprocess.Process] = attrs.field(factory=set)
    # every container output still read; kill_all() closes what is left
    outputs: set[ContainerOutput] = attrs.field(factory=set)

    async def start(
        self, launch: Launch, *, netns: str, hostname: str, pod_dir: Path, log: Path
    ) -> tuple[asyncio.subprocess.Process, ContainerOutput]:
        """Start `launch` in network namespace `netns`, its output going to `log`;
        `pod_dir` holds the pod's volumes."""
        tools = self.tools
        script = _wrapper_script(
            tools,
            hostname=hostname,
            mounts=launch.mounts,
            working_dir=launch.working_dir,
            volumes_root=pod_dir,
            executable=launch.executable,
        )
        argv = [
            # SIGKILL the container if the agent dies without cleaning up
            *(tools.setpriv, "--pdeathsig", "KILL", "--"),
            *(tools.ip, "netns", "exec", netns),
            *(tools.unshare, "--uts", "--"),
            *(tools.sh, "-c", script, "agc-container"),
            *launch.argv,
        ]
        output = ContainerOutput(log)
        self.outputs.add(output)
        # the read ends go to `output`; the process holds the only write ends
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout_write,
                stderr=stderr_write,
                env=launch.env,
                cwd="/",
                start_new_session=True,
            )
        except BaseException:
            os.close(stdout_read)
            os.close(stderr_read)
            output.close()
            self.outputs.discard(output)
            raise
        finally:
            os.close(stdout_write)
            os.close(stderr_write)
        self.alive.add(process)
        pipes = {"stdout": stdout_read, "stderr": stderr_read}
        try:
            for stream in list(pipes):
                await output.attach(stream, pipes.pop(stream))
        except BaseException:
            for fd in pipes.values():
                os.close(fd)
            signal_group(process, signal.SIGKILL)
            self.alive.discard(process)
            output.close()
            self.outputs.discard(output)
            raise
        return process, output

    async def stop(self, process: asyncio.subprocess.Process, *, grace: float) -> None:
        """SIGTERM its process group, SIGKILL after `grace` seconds."""
        signal_group(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            signal_group(process, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 5.0)
        self.alive.discard(process)

    async def exited(self, process: asyncio.subprocess.Process, output: ContainerOutput) -> None:
        """Forget an exited process; its output still gets what its children write
        for LOG_DRAIN_GRACE seconds."""
        self.alive.discard(process)
        await output.finish(LOG_DRAIN_GRACE)
        self.outputs.discard(output)

    def kill_all(self) -> None:
        """SIGKILL what graceful stops missed and close every output (the agent stops)."""
        for process in list(self.alive):
            signal_group(process, signal.SIGKILL)
        self.alive.clear()
        for output in list(self.outputs):
            output.close()
        self.outputs.clear()


def signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # every container process leads its own session, so the group holds its children too
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


def real_path(path: str) -> str:
    return os.path.realpath(path)


def find_executable(name: str) -> str | None:
    if "/" in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def _wrapper_script(
    tools: HostTools,
    *,
    hostname: str,
    mounts: Sequence[Mount],
    working_dir: str,
    volumes_root: Path,
    executable: str,
) -> str:
    """sh run inside the pod's namespaces: set the hostname, bind the volumes, exec.

    A volume mounted over a directory of the host (a ConfigMap at /root, with the
    agent's state and the image binaries under /root/.cache) hides what is below
    it: the other mounts' sources are reached through a descriptor of
    `volumes_root` opened before the first mount (closed before the exec), and an
    `executable` a mount hides is run through a descriptor too.
    """
    q = shlex.quote
    hidden = any(
        executable == m.target or executable.startswith(m.target.rstrip("/") + "/") for m in mounts
    )
    lines = [
        "set -e",
        f"echo {q(hostname)} > /proc/sys/kernel/hostname",
        f"exec 3< {q(str(volumes_root))}",
    ]
    if hidden:
        lines.append('exec 4< "$1"')
    for mount in mounts:
        target = q(mount.target)
        source = str(mount.source)
        if mount.source.is_relative_to(volumes_root):
            source = posixpath.join("/proc/self/fd/3", str(mount.source.relative_to(volumes_root)))
        if mount.is_file:
            lines.append(f"{q(tools.mkdir)} -p -- {q(posixpath.dirname(mount.target))}")
            lines.append(f"[ -e {target} ] || : > {target}")
        else:
            lines.append(f"{q(tools.mkdir)} -p -- {target}")
        lines.append(f"{q(tools.mount)} --bind -- {q(source)} {target}")
        if mount.read_only:
            lines.append(f"{q(tools.mount)} -o remount,bind,ro -- {target}")
    lines.append("exec 3<&-")
    lines.append(f"{q(tools.mkdir)} -p -- {q(working_dir)}")
    lines.append(f"cd -- {q(working_dir)}")
    lines.append('shift; exec /proc/self/fd/4 "$@"' if hidden else 'exec "$@"')
    return "\n".join(lines)
