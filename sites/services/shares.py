"""NFS exports and SMB shares: create, change, delete, and push each space's share set to its sites.

Every change sends the space's *complete* share set to each of the space's sites as one
``APPLY_SHARES`` site task, never a delta: the agent replaces what it publishes for that space
with what it receives, so orders are idempotent, a lost or repeated order heals at the next
change, and the hub's rows stay the single source of truth. The order carries no secrets (shares
have none); NFS options arrive already rendered from the validated fields (``sites.shares``),
and SMB advanced settings only with names and values from the safe list.

The order (``agent.apply_shares``), until it moves to ``agent.contract``::

    {"space": name, "space_uuid": "...", "mountpoint": "/mmfs1/projects",
     "nfs": [{"uuid", "name", "path", "fsid", "clients": [{"hosts", "options": "ro,sync,...", ...}]}],
     "smb": [{"uuid", "name", "path", "read_only", "visible", ..., "advanced_settings": {...}}]}

``nfs`` and ``smb`` are empty when the space leaves the site or is deleted (the agent withdraws
the space's shares there). SMB shares whose ``on_sites`` does not name the site are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from agent.contract import SharesOrder
from hub import permissions
from sites.models import NfsClient, NfsShare, SettingsTask, Site, SmbShare, Space
from sites.services.site_tasks import send_site_task
from sites.shares import nfs_export_options

_NFS_CLIENT_FIELDS = ("hosts", "read_only", "subtree_check", "asynchronous", "write_delay", "insecure_ports",
                      "force_root_user_id", "force_all_user_id", "anonymous_user_id", "anonymous_group_id",
                      "advanced_settings")
_SMB_FIELDS = ("name", "path", "read_only", "visible", "guest_ok", "hosts_allow", "hosts_deny", "admin_users",
               "allowed_users", "create_mask", "directory_mask", "force_create_mode", "force_directory_mode",
               "hsm_support", "multi_thread_reads", "multi_thread_writes", "root_share_locking",
               "advanced_settings")


def _nfs_payload(share: NfsShare) -> dict[str, Any]:
    return {
        "uuid": str(share.uuid),
        "name": share.name,
        "path": share.path,
        "fsid": share.fsid,
        "clients": [
            {"uuid": str(client.uuid), **{name: getattr(client, name) for name in _NFS_CLIENT_FIELDS},
             "options": nfs_export_options(client)}
            for client in share.clients.all()
        ],
    }


def _smb_payload(share: SmbShare) -> dict[str, Any]:
    return {"uuid": str(share.uuid), **{name: getattr(share, name) for name in _SMB_FIELDS}}


def shares_order(space: Space, site: Site, *, nfs: list[NfsShare], smb: list[SmbShare]) -> SharesOrder:
    """The share set ``space`` publishes on ``site`` (SMB shares limited by their ``on_sites``)."""
    return SharesOrder(
        space=space.name,
        space_uuid=str(space.uuid),
        mountpoint=space.mountpoint,
        nfs=[_nfs_payload(share) for share in nfs],
        smb=[_smb_payload(share) for share in smb if not share.on_sites or site.name in share.on_sites],
    )


def push_space_shares(
    actor: Any, space: Space, *, sites: Iterable[Site] | None = None, withdraw: bool = False
) -> list[SettingsTask]:
    """Send ``space``'s complete share set to ``sites`` (default: all of its sites).

    ``withdraw`` sends an empty set, for sites the space is leaving or a space being deleted.
    """
    targets = list(space.sites.order_by("name")) if sites is None else list(sites)
    if not targets:
        return []
    nfs: list[NfsShare] = []
    smb: list[SmbShare] = []
    if not withdraw:
        nfs = list(NfsShare.objects.filter(space=space).prefetch_related("clients").order_by("path", "id"))
        smb = list(SmbShare.objects.filter(space=space).order_by("name"))
    return [
        send_site_task(
            site, SettingsTask.TaskType.APPLY_SHARES, dict(shares_order(space, site, nfs=nfs, smb=smb)),
            actor=actor, friendly_name=f"Apply shares of space {space.name} on {site.name}",
        )
        for site in targets
    ]


def space_has_shares(space: Space) -> bool:
    return NfsShare.objects.filter(space=space).exists() or SmbShare.objects.filter(space=space).exists()


# --- NFS -------------------------------------------------------------------------------------------

def _create_clients(share: NfsShare, clients: list[dict[str, Any]]) -> None:
    NfsClient.objects.bulk_create([NfsClient(nfs_share=share, **client) for client in clients])


@transaction.atomic
def create_nfs_share(actor: Any, *, space: Space, clients: list[dict[str, Any]], **fields: Any) -> NfsShare:
    """An NFS export of a directory of ``space`` (validated by the serializer), pushed to its sites."""
    share = NfsShare.objects.create(space=space, **fields)
    _create_clients(share, clients)
    push_space_shares(actor, space)
    return share


@transaction.atomic
def update_nfs_share(
    actor: Any, share: NfsShare, *, clients: list[dict[str, Any]] | None = None, **changes: Any
) -> NfsShare:
    """Change an export; ``clients``, when given, replaces the whole client list."""
    changes.pop("space", None)  # a share never moves to another space (the serializer refuses it)
    for name, value in changes.items():
        setattr(share, name, value)
    share.save()
    if clients is not None:
        share.clients.all().delete()
        _create_clients(share, clients)
    push_space_shares(actor, share.space)
    return share


# --- SMB -------------------------------------------------------------------------------------------

@transaction.atomic
def create_smb_share(actor: Any, *, space: Space, **fields: Any) -> SmbShare:
    """An SMB share of a directory of ``space`` (validated by the serializer), pushed to its sites."""
    share = SmbShare.objects.create(space=space, **fields)
    push_space_shares(actor, space)
    return share


@transaction.atomic
def update_smb_share(actor: Any, share: SmbShare, **changes: Any) -> SmbShare:
    """Change a share and push the space's share set (a site dropped from ``on_sites`` withdraws it)."""
    changes.pop("space", None)
    for name, value in changes.items():
        setattr(share, name, value)
    share.save()
    push_space_shares(actor, share.space)
    return share


# --- either kind -----------------------------------------------------------------------------------

@transaction.atomic
def delete_share(actor: Any, share: NfsShare | SmbShare) -> None:
    """Stop exporting or sharing the directory (its data is untouched) and push the remaining set."""
    space = share.space
    permissions.forget_object(share)
    share.delete()
    push_space_shares(actor, space)
