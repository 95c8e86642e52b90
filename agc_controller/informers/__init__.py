"""Informers: list+watch caches of API objects, one per kind (see informer.py).

Handlers only map objects to work-queue keys; readers use `Informer.store`,
whose objects are read-only by contract.
"""

from agc_controller.core.keys import object_key
from agc_controller.informers.backoff import Backoff
from agc_controller.informers.informer import EventHandler, Informer
from agc_controller.informers.reflector import (
    ApiListWatcher,
    ApiStatusError,
    ListPage,
    ListWatcher,
    ResourceExpired,
    WatchEvent,
)
from agc_controller.informers.store import (
    Indexer,
    KubeObject,
    ReplaceDeltas,
    Store,
)
from agc_controller.informers.transforms import (
    Transform,
    drop_managed_fields,
    transform_for,
    trim_config_map,
    trim_secret,
)

__all__ = [
    "ApiListWatcher",
    "ApiStatusError",
    "Backoff",
    "EventHandler",
    "Indexer",
    "Informer",
    "KubeObject",
    "ListPage",
    "ListWatcher",
    "ReplaceDeltas",
    "ResourceExpired",
    "Store",
    "Transform",
    "WatchEvent",
    "drop_managed_fields",
    "object_key",
    "transform_for",
    "trim_config_map",
    "trim_secret",
]
