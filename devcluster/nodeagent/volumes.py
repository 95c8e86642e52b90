"""A pod's volumes on the host: secret, configMap, emptyDir, downwardAPI, projected
(with serviceAccountToken) and hostPath, written under the pod's directory
(state_dir/pods/<uid>/volumes/<name>/) and bind-mounted into its containers.

Invariants: a volume file never lands outside its volume's directory; content
is written once, before the containers start (no updates after); secret,
configMap, downwardAPI and projected volumes are read-only.
"""

from __future__ import annotations

import asyncio
import posixpath
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from agc_controller.informers import KubeObject
from devcluster.nodeagent.api import KIND_OF_PLURAL, Api, ObjectReader
from devcluster.nodeagent.podspec import ConfigError, expand, field_value
from devcluster.nodeagent.tokens import service_account_token


@attrs.frozen
class File:
    path: str  # relative to the volume's directory
    content: bytes
    mode: int


@attrs.frozen
class Volume:
    path: Path  # the host directory (or file) bind-mounted into containers
    read_only: bool  # secret, configMap, downwardAPI and projected volumes always are


@attrs.frozen
class Mount:
    source: Path
    target: str
    read_only: bool
    is_file: bool


def write_volume(directory: Path, files: Sequence[File]) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o755)
    for file in files:
        target = (directory / file.path).resolve()
        if not target.is_relative_to(directory.resolve()) or target == directory.resolve():
            raise ConfigError("ContainerCreating", f"volume file path {file.path!r} is invalid")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)
        target.chmod(file.mode & 0o777)


async def prepare_volumes(
    api: Api, pod: KubeObject, directory: Path, *, pod_ip: str, host_ip: str
) -> dict[str, Volume]:
    """Write `pod`'s volumes under `directory` (one subdirectory each); by name."""
    return await _PodVolumes(api, pod, directory, pod_ip=pod_ip, host_ip=host_ip).prepare()


class _PodVolumes:
    """Builds one pod's volumes; Secrets and ConfigMaps are read once for all of them."""

    def __init__(
        self, api: Api, pod: KubeObject, directory: Path, *, pod_ip: str, host_ip: str
    ) -> None:
        self._api = api
        self._pod = pod
        self._directory = directory
        self._pod_ip = pod_ip
        self._host_ip = host_ip
        self._reader = ObjectReader(api, pod["metadata"]["namespace"])

    async def prepare(self) -> dict[str, Volume]:
        volumes: dict[str, Volume] = {}
        for volume in self._pod["spec"].get("volumes") or []:
            name = volume["name"]
            try:
                volumes[name] = await self._prepare_volume(volume)
            except ConfigError as error:
                raise ConfigError(
                    "ContainerCreating", f'MountVolume.SetUp failed for volume "{name}": {error}'
                ) from error
        return volumes

    async def _prepare_volume(self, volume: Mapping[str, Any]) -> Volume:
        directory = self._directory / volume["name"]
        if "hostPath" in volume:
            return await asyncio.to_thread(host_path_volume, volume["hostPath"])
        if "emptyDir" in volume:
            await asyncio.to_thread(write_volume, directory, [])
            return Volume(path=directory, read_only=False)
        files: list[File] = []
        if "secret" in volume:
            source = volume["secret"]
            files = await self._key_files(
                "secrets", source.get("secretName", ""), source, source.get("defaultMode")
            )
        elif "configMap" in volume:
            source = volume["configMap"]
            files = await self._key_files(
                "configmaps", source.get("name", ""), source, source.get("defaultMode")
            )
        elif "downwardAPI" in volume:
            source = volume["downwardAPI"]
            files = self._downward_files(source.get("items") or [], source.get("defaultMode"))
        elif "projected" in volume:
            files = await self._projected_files(volume["projected"])
        else:
            kinds = ", ".join(sorted(set(volume) - {"name"})) or "no source"
            raise ConfigError("ContainerCreating", f"volume type {kinds} is not supported")
        await asyncio.to_thread(write_volume, directory, files)
        return Volume(path=directory, read_only=True)

    async def _key_files(
        self,
        plural: str,
        name: str,
        source: Mapping[str, Any],
        default_mode: int | None,
    ) -> list[File]:
        mode = 0o644 if default_mode is None else default_mode
        data = await self._reader.data(plural, name)
        kind = KIND_OF_PLURAL[plural]
        optional = bool(source.get("optional"))
        if data is None:
            if optional:
                return []
            raise ConfigError("ContainerCreating", f'{kind} "{name}" not found')
        items = source.get("items")
        if not items:
            return [File(path=key, content=value, mode=mode) for key, value in data.items()]
        files = []
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise ConfigError("ContainerCreating", f'key {item["key"]} not in {kind} "{name}"')
            files.append(
                File(path=item["path"], content=data[item["key"]], mode=item.get("mode", mode))
            )
        return files

    def _downward_files(
        self, items: Sequence[Mapping[str, Any]], default_mode: int | None
    ) -> list[File]:
        mode = 0o644 if default_mode is None else default_mode
        files = []
        for item in items:
            if "fieldRef" not in item:
                raise ConfigError(
                    "ContainerCreating", f"downwardAPI item {item.get('path')}: only fieldRef works"
                )
            value = field_value(
                self._pod,
                item["fieldRef"]["fieldPath"],
                pod_ip=self._pod_ip,
                host_ip=self._host_ip,
            )
            files.append(
                File(path=item["path"], content=value.encode(), mode=item.get("mode", mode))
            )
        return files

    async def _projected_files(self, projected: Mapping[str, Any]) -> list[File]:
        mode = projected.get("defaultMode")
        files: list[File] = []
        for source in projected.get("sources") or []:
            if "secret" in source:
                ref = source["secret"]
                files += await self._key_files("secrets", ref.get("name", ""), ref, mode)
            elif "configMap" in source:
                ref = source["configMap"]
                files += await self._key_files("configmaps", ref.get("name", ""), ref, mode)
            elif "downwardAPI" in source:
                files += self._downward_files(source["downwardAPI"].get("items") or [], mode)
            elif "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                files.append(
                    File(
                        path=token["path"],
                        content=(await service_account_token(self._api, self._pod, token)).encode(),
                        mode=0o600 if mode is None else mode,
                    )
                )
            else:
                kinds = ", ".join(sorted(source)) or "no source"
                raise ConfigError("ContainerCreating", f"projected source {kinds} is not supported")
        return files


def host_path_volume(source: Mapping[str, Any]) -> Volume:
    path = Path(source["path"])
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind and not path.exists():
        raise ConfigError("ContainerCreating", f"hostPath {path} does not exist")
    return Volume(path=path, read_only=False)


def mounts(
    spec: Mapping[str, Any], volumes: Mapping[str, Volume], env: Mapping[str, str]
) -> tuple[Mount, ...]:
    """Container `spec`'s volumeMounts as bind mounts of `volumes` (env: for subPathExpr);
    a missing subPath directory is created, as a kubelet does."""
    mounts = []
    for mount in spec.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ConfigError(
                "CreateContainerConfigError", f'volume "{mount["name"]}" is not defined'
            )
        sub_path = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env)
        if sub_path.startswith("/") or ".." in sub_path.split("/"):
            raise ConfigError("CreateContainerConfigError", f"invalid subPath {sub_path!r}")
        source = volume.path / sub_path if sub_path else volume.path
        if not source.exists():
            source.mkdir(parents=True)  # as a kubelet does for a missing subPath
        mounts.append(
            Mount(
                source=source,
                target=posixpath.normpath(mount["mountPath"]),
                read_only=volume.read_only or bool(mount.get("readOnly")),
                is_file=source.is_file(),
            )
        )
    # parents before children, so that a nested mount lands inside its parent's
    return tuple(sorted(mounts, key=lambda m: m.target.count("/")))
