"""Models of the storage estate (re-exported so imports stay ``from sites.models import X``)."""

from sites.models.catalog import FileStatusType, Tag
from sites.models.datastores import DataStore, IPAddress, SiteLink
from sites.models.inventory import Fileset, Filesystem, Server, StoragePool
from sites.models.nodes import DEFAULT_QUEUE, Node, Queue, broker_queue_name, heartbeat_cutoff
from sites.models.shares import NfsClient, NfsShare, SmbShare
from sites.models.site import NAME_VALIDATOR, Site, SiteSetting, new_agent_key
from sites.models.spaces import SnapshotSchedule, Space, SpaceSite
from sites.models.targets import Bucket, ExternalTarget
from sites.models.tasks import SettingsTask

__all__ = [
    "DEFAULT_QUEUE",
    "NAME_VALIDATOR",
    "Bucket",
    "DataStore",
    "ExternalTarget",
    "FileStatusType",
    "Filesystem",
    "Fileset",
    "IPAddress",
    "NfsClient",
    "NfsShare",
    "Node",
    "Queue",
    "Server",
    "SettingsTask",
    "Site",
    "SiteLink",
    "SiteSetting",
    "SmbShare",
    "SnapshotSchedule",
    "Space",
    "SpaceSite",
    "StoragePool",
    "Tag",
    "broker_queue_name",
    "heartbeat_cutoff",
    "new_agent_key",
]
