"""One Gateway's router state as shard documents, kept between builds (pure).

The controller side of config.py's sharded delivery: `build(model)` gives the
manifest, `data(shard)` the Secret data of one of its shards. What a change
costs follows what changed: StateParts hands back the very same bytes object
for every part that did not change, so finding the changed parts is one
identity check per part, and only the shards holding one are joined and
digested again. No shard is compressed or encoded here until the provider asks
for it with `data` (it does for the shards it must write, and no other).

Invariants between builds: `_parts` is the last build's parts; `_shards[s]`
holds exactly those of them that `shard_of` puts in shard s; `_digests` holds
the digest of `shard_document(_shards[s])` for every non-empty s and for no
other.
"""

from __future__ import annotations

from agc_controller.dataplane.config import (
    SHARDS,
    Manifest,
    digest,
    encode_shard,
    shard_document,
    shard_of,
)
from agc_controller.providers.local.dynamic import MeshEndpoints, StateParts
from agc_controller.translate import model as alb


class ShardedState:
    """One Gateway's shards: `build` after each translation, `data` for a write."""

    def __init__(self) -> None:
        # the router state as parts, built by difference
        self._state = StateParts()
        # the last build's parts (StateParts' own dict: a new one every build)
        self._parts: dict[str, bytes] = {}
        # shard -> its parts
        self._shards: list[dict[str, bytes]] = [{} for _ in range(SHARDS)]
        # shard -> the digest of its document, for the non-empty shards
        self._digests: dict[int, str] = {}

    def build(self, model: alb.LoadBalancer, mesh: MeshEndpoints | None = None) -> Manifest:
        parts, needs = self._state.build(model, mesh)
        last, changed, added = self._parts, set(), 0
        for name, text in parts.items():
            known = last.get(name)
            if known is text:
                continue
            if known is None:
                added += 1
            changed.add(shard := shard_of(name))
            self._shards[shard][name] = text
        if len(parts) - added != len(last):
            # some part is gone (every name of `parts` that is not new was in `last`)
            for name in last.keys() - parts.keys():
                changed.add(shard := shard_of(name))
                del self._shards[shard][name]
        self._parts = parts
        for shard in changed:
            if self._shards[shard]:
                self._digests[shard] = digest(shard_document(self._shards[shard]))
            else:
                self._digests.pop(shard, None)
        return Manifest(needs=needs, shards=dict(sorted(self._digests.items())))

    def mesh_endpoints(self, model: alb.LoadBalancer) -> list[alb.Endpoint]:
        """The endpoints of the mesh backends of the last build (of `model`)."""
        return self._state.mesh_endpoints(model)

    def data(self, shard: int) -> dict[str, str]:
        """The Secret data of shard `shard` as of the last build; ConfigTooLarge if
        it does not fit in a Secret."""
        return encode_shard(shard, self._shards[shard])
