"""Choosing and building the driver for a bucket, importing its cloud SDK only when used.

An agent serving only S3 targets never imports azure or google libraries: each backend module
is imported on first use, by name, from ``DRIVERS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from agent.drivers.base import ObjectStore, PermanentError

# storage_type -> "module:Class"
DRIVERS: dict[str, str] = {
    "s3": "agent.drivers.s3:S3Store",
    "azure": "agent.drivers.azure:AzureStore",
    "gcs": "agent.drivers.gcs:GCSStore",
    "fs": "agent.drivers.fs:FolderStore",
    "memory": "agent.drivers.memory:MemoryStore",
}


def driver_class(storage_type: str) -> type[ObjectStore]:
    try:
        target = DRIVERS[storage_type]
    except KeyError:
        raise PermanentError(f"no driver for storage type {storage_type!r}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_store(bucket: Mapping[str, Any]) -> ObjectStore:
    """Build the driver for a bucket description (the hub's bucket fields plus credentials).

    Each driver's ``from_bucket`` reads the fields it needs and ignores the rest.
    """
    cls = driver_class(str(bucket.get("storage_type", "")))
    factory = getattr(cls, "from_bucket", None)
    if factory is None:
        return cls()
    return factory(bucket)
