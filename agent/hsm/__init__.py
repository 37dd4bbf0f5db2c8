"""HSM bookkeeping shared by the filesystem drivers: the per-file state record kept in an extended
attribute (``state``) and the file metadata carried by each object (``metadata``).

The operations themselves (migrate, recall, release, reverse stub) are a capability of the
filesystem driver (``agent.drivers.posix``), which the GPFS driver extends.
"""

from agent.hsm.metadata import MetadataError, ObjectMetadata, parse_metadata, to_metadata
from agent.hsm.state import (
    RESIDENT_STATES,
    TRANSITIONS,
    XATTR_NAME,
    HsmRecord,
    HsmState,
    HsmStateError,
    Pending,
    check_transition,
    clear_record,
    read_record,
    write_record,
)

__all__ = [
    "RESIDENT_STATES",
    "TRANSITIONS",
    "XATTR_NAME",
    "HsmRecord",
    "HsmState",
    "HsmStateError",
    "MetadataError",
    "ObjectMetadata",
    "Pending",
    "check_transition",
    "clear_record",
    "parse_metadata",
    "read_record",
    "to_metadata",
    "write_record",
]
