"""The hub's platform models: accounts, client keys, configuration, feature flags, audit."""

from hub.models.accounts import GroupDetail, IdSequence, NasGroup, NasUser, Profile, SyncRequest
from hub.models.audit import AuditEvent
from hub.models.clientkeys import ClientKey
from hub.models.config import ConfigurationValue, Feature, GlobalSetting

__all__ = [
    "AuditEvent",
    "ClientKey",
    "ConfigurationValue",
    "Feature",
    "GlobalSetting",
    "GroupDetail",
    "IdSequence",
    "NasGroup",
    "NasUser",
    "Profile",
    "SyncRequest",
]
