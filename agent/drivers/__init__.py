"""Storage drivers: object stores (remote targets) and the filesystem driver with HSM operations."""

from agent.drivers.base import (
    AccessDenied,
    AlreadyExists,
    DriverError,
    ListPage,
    NotFound,
    ObjectInfo,
    ObjectStore,
    PermanentError,
    TransientError,
)

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "DriverError",
    "ListPage",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "PermanentError",
    "TransientError",
]
