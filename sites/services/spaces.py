"""Spaces: create, change, place on sites, delete; their readiness; their neighbours in the tree.

A space is one mountpoint present on one or more sites. Placing it on a site sends that site's
agent a ``CREATE_SPACE`` order (make the directory or GPFS fileset, with the quota and pool);
the placement is ``ready`` once the agent reports success (``_placement_created``). The rules
that keep sites sane are enforced here, for the API and any other caller alike:

* on one site, no two spaces share a mountpoint, and a space is not nested inside (or around)
  another space of that site unless the caller explicitly allows nesting;
* an ``immutable`` space (the default space) is neither changed nor deleted;
* a space that external targets use is not deleted (the targets would lose their source).

Nothing here ever deletes data on a site: removing a site from a space, or deleting the space,
only forgets the placement and withdraws the space's shares on that site.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError, Q
from rest_framework.exceptions import PermissionDenied, ValidationError

from agent.contract import SpaceOrder
from hub import permissions
from hub.api.exceptions import Conflict
from sites.models import (
    ExternalTarget,
    NfsShare,
    SettingsTask,
    Site,
    SmbShare,
    SnapshotSchedule,
    Space,
    SpaceSite,
    StoragePool,
)
from sites.services.shares import push_space_shares, space_has_shares
from sites.services.site_tasks import on_finish, send_site_task
from sites.validators import ancestors, is_inside

# Fields a PATCH may change directly (mountpoint and immutable are fixed at creation).
_UPDATABLE = ("name", "size", "permission_mode", "color")
# Changes that the agent must apply to an existing placement (quota, permission mode).
_REAPPLIED = ("size", "permission_mode")


@dataclass(frozen=True)
class Placement:
    """A site a space should be on, and its pool there.

    ``pool_given`` says whether the request named a pool at all: on a PATCH, a site listed
    without a pool keeps the pool it has.
    """

    site: Site
    pool: StoragePool | None = None
    pool_given: bool = False


# --- checks ----------------------------------------------------------------------------------------

def _check_may_place(actor: Any, sites: list[Site], verb: str) -> None:
    """Placing a space on a site (or taking it away) creates or withdraws things on that site, so
    the caller must administer the site as well as the space. ``actor=None`` is the system."""
    if actor is None:
        return
    refused = [site.name for site in sites if not permissions.has_object_perm(actor, site, permissions.CHANGE)]
    if refused:
        raise PermissionDenied(f"You may not {verb} site(s) you do not administer: {', '.join(sorted(refused))}.")


def check_mountpoint(
    mountpoint: str, sites: list[Site], *, exclude: Space | None = None, allow_nested: bool = False,
    field: str = "mountpoint",
) -> None:
    """Refuse a mountpoint used, or (unless ``allow_nested``) nested, by another space on ``sites``."""
    site_ids = {site.pk for site in sites}
    if not site_ids:
        return
    candidates = Space.objects.filter(placements__site_id__in=site_ids).filter(
        Q(mountpoint=mountpoint) | Q(mountpoint__startswith=mountpoint + "/") | Q(mountpoint__in=ancestors(mountpoint))
    )
    if exclude is not None:
        candidates = candidates.exclude(pk=exclude.pk)
    rows = (
        candidates.values_list("name", "mountpoint", "placements__site__name", "placements__site_id")
        .order_by("mountpoint", "name", "placements__site__name")
    )
    same: list[str] = []
    nested: list[str] = []
    for name, other, site_name, site_id in rows:
        # SQLite's LIKE ignores case: keep only real ancestors and descendants.
        if site_id not in site_ids or not (is_inside(mountpoint, other) or is_inside(other, mountpoint)):
            continue
        if other == mountpoint:
            same.append(f"space '{name}' already uses mountpoint '{other}' on site '{site_name}'")
        elif not allow_nested:
            where = "inside" if is_inside(mountpoint, other) else "around"
            nested.append(f"'{mountpoint}' would be {where} space '{name}' ('{other}') on site '{site_name}'")
    if same:
        raise ValidationError({field: [message[0].upper() + message[1:] + "." for message in same]})
    if nested:
        raise ValidationError({field: [
            "; ".join(nested) + ". Nested spaces share a directory tree (quotas, snapshots and "
            "workflows overlap); set allow_nested to true if that is intended."
        ]})


def _save_schedule(space: Space, schedule: dict[str, Any] | None) -> None:
    if schedule is None:
        SnapshotSchedule.objects.filter(space=space).delete()
        return
    SnapshotSchedule.objects.update_or_create(
        space=space, defaults={key: schedule[key] for key in ("frequency", "time", "duration")}
    )


def _lock_sites(sites: list[Site]) -> None:
    # Two requests placing spaces on the same site at once must not both pass the mountpoint
    # checks: the second waits for the first's commit and then sees its space.
    list(Site.objects.select_for_update().filter(pk__in=[site.pk for site in sites]).values_list("pk"))


# --- orders ----------------------------------------------------------------------------------------

def _order_space(actor: Any, space: Space, placement: SpaceSite, *, verb: str = "Create") -> SettingsTask:
    payload = SpaceOrder(
        space=space.name,
        mountpoint=space.mountpoint,
        size=space.size or None,  # 0 and null both mean unlimited
        pool=placement.pool.name if placement.pool is not None else None,
        permission_mode=str(space.permission_mode),
    )
    return send_site_task(
        placement.site, SettingsTask.TaskType.CREATE_SPACE, dict(payload), actor=actor,
        friendly_name=f"{verb} space {space.name} on {placement.site.name}",
    )


@on_finish(SettingsTask.TaskType.CREATE_SPACE)
def _placement_created(task: SettingsTask) -> None:
    """The agent made the space's directory: the placement is ready (the mountpoint, unlike the
    name, never changes, so it identifies the space even if it was renamed meanwhile)."""
    if task.state != SettingsTask.State.SUCCESS:
        return
    mountpoint = (task.request or {}).get("mountpoint")
    if mountpoint:
        SpaceSite.objects.filter(site_id=task.site_id, space__mountpoint=mountpoint).update(ready=True)


# --- use cases -------------------------------------------------------------------------------------

@transaction.atomic
def create_space(
    actor: Any,
    *,
    name: str,
    mountpoint: str,
    placements: list[Placement],
    size: int | None = None,
    permission_mode: str = Space.PermissionMode.CHMOD_AND_SET_ACL,
    color: list[int] | None = None,
    immutable: bool = False,
    snapshot_schedule: dict[str, Any] | None = None,
    allow_nested: bool = False,
) -> Space:
    """A space on ``placements``' sites; each site's agent is ordered to create its directory."""
    sites = [placement.site for placement in placements]
    _check_may_place(actor, sites, "place a space on")
    _lock_sites(sites)
    check_mountpoint(mountpoint, sites, allow_nested=allow_nested)
    space = Space.objects.create(
        name=name, mountpoint=mountpoint, size=size, permission_mode=permission_mode, color=color or [],
        immutable=immutable,
    )
    rows = SpaceSite.objects.bulk_create(
        [SpaceSite(space=space, site=placement.site, pool=placement.pool) for placement in placements]
    )
    if snapshot_schedule is not None:
        _save_schedule(space, snapshot_schedule)
    for row in rows:
        _order_space(actor, space, row)
    return space


def _refuse_if_immutable(space: Space, verb: str) -> None:
    if space.immutable:
        raise Conflict(f"Space '{space.name}' is immutable: it cannot be {verb}.")


def _check_removable(space: Space, sites: list[Site]) -> None:
    """A site cannot leave a space while a share or target of the space explicitly names it."""
    names = {site.name for site in sites}
    problems = []
    for share in SmbShare.objects.filter(space=space).only("name", "on_sites"):
        named = sorted(names & set(share.on_sites or []))
        if named:
            problems.append(f"SMB share '{share.name}' is published on {', '.join(named)}")
    targets = (
        ExternalTarget.objects.filter(space=space, available_on_sites__in=sites)
        .values_list("name", "available_on_sites__name").order_by("name")
    )
    for target, site_name in targets:
        problems.append(f"external target '{target}' is available on {site_name}")
    if problems:
        raise Conflict(
            f"Site(s) {', '.join(sorted(names))} cannot be removed from space '{space.name}': "
            + "; ".join(problems) + ". Change those first."
        )


@transaction.atomic
def update_space(
    actor: Any,
    space: Space,
    *,
    placements: list[Placement] | None = None,
    allow_nested: bool = False,
    **changes: Any,
) -> Space:
    """Apply a PATCH. ``placements`` (when given) is the complete list of sites: new sites get the
    space (a ``CREATE_SPACE`` order each), sites left out lose it - the placement is forgotten and
    the space's shares withdrawn there, but no data is deleted on the site.

    ``snapshot_schedule`` in ``changes``: a dict sets or replaces the schedule, None removes it.
    A new quota or permission mode is re-sent to the sites that already have the space.
    """
    space = Space.objects.select_for_update().get(pk=space.pk)
    _refuse_if_immutable(space, "changed")
    reapply = any(key in changes and changes[key] != getattr(space, key) for key in _REAPPLIED)
    for key in _UPDATABLE:
        if key in changes:
            setattr(space, key, changes[key] if key != "color" else (changes[key] or []))
    space.save()
    if "snapshot_schedule" in changes:
        _save_schedule(space, changes["snapshot_schedule"])

    current = {row.site_id: row for row in space.placements.select_related("site", "pool")}
    added: list[Placement] = []
    removed: list[SpaceSite] = []
    if placements is not None:
        wanted = {placement.site.pk: placement for placement in placements}
        added = [placement for site_id, placement in wanted.items() if site_id not in current]
        removed = [row for site_id, row in current.items() if site_id not in wanted]
        changed_pools = [
            placement.site.name for site_id, placement in wanted.items()
            if site_id in current and placement.pool_given and placement.pool != current[site_id].pool
        ]
        if changed_pools:
            raise ValidationError({"sites": [
                f"The pool of a site the space is already on cannot be changed (the data would have to "
                f"move): {', '.join(sorted(changed_pools))}."
            ]})
        _check_may_place(actor, [p.site for p in added] + [row.site for row in removed],
                         "add or remove a space on")
        if added:
            _lock_sites([placement.site for placement in added])
            check_mountpoint(space.mountpoint, [placement.site for placement in added], exclude=space,
                             allow_nested=allow_nested, field="sites")
        if removed:
            _check_removable(space, [row.site for row in removed])

    if reapply:
        for row in current.values():
            if row not in removed:
                _order_space(actor, space, row, verb="Update")
    if removed:
        has_shares = space_has_shares(space)
        SpaceSite.objects.filter(pk__in=[row.pk for row in removed]).delete()
        if has_shares:
            push_space_shares(actor, space, sites=[row.site for row in removed], withdraw=True)
    if added:
        rows = SpaceSite.objects.bulk_create(
            [SpaceSite(space=space, site=placement.site, pool=placement.pool) for placement in added]
        )
        for row in rows:
            _order_space(actor, space, row)
        if space_has_shares(space):
            push_space_shares(actor, space, sites=[placement.site for placement in added])
    return space


@transaction.atomic
def delete_space(actor: Any, space: Space) -> None:
    """Forget a space: its placements and shares go (shares are withdrawn on its sites), its data
    stays on the sites. Refused for an immutable space and while external targets use it."""
    _refuse_if_immutable(space, "deleted")
    targets = list(ExternalTarget.objects.filter(space=space).order_by("name").values_list("name", flat=True))
    if targets:
        raise Conflict(
            f"Space '{space.name}' cannot be deleted: external targets use it ({', '.join(targets)}). "
            "Delete or re-point those targets first."
        )
    if space_has_shares(space):
        push_space_shares(actor, space, withdraw=True)
    for share in [*NfsShare.objects.filter(space=space), *SmbShare.objects.filter(space=space)]:
        permissions.forget_object(share)
    permissions.forget_object(space)
    try:
        space.delete()
    except ProtectedError as exc:  # a target created by a concurrent request
        names = sorted({str(obj) for obj in exc.protected_objects})
        raise Conflict(f"Space '{space.name}' cannot be deleted: in use by {', '.join(names)}.") from None


# --- relationships and nested shares (batched for list pages) --------------------------------------

class SpaceLinks:
    """Each space's parents, children and nested shares, computed for a page in three queries.

    Only spaces the caller may view, and their shares, appear, and only those sharing a site with the
    space: nesting is a property of one site's directory tree, so a space at ``/a`` on one site
    and one at ``/a/b`` on another are unrelated.

    ``nested_shares`` lists every share (NFS and SMB) whose path lies in the space's tree on one
    of its sites: the space's own shares and those of spaces nested inside it. That is the
    answer to "who can reach this data over the network", which an admin needs before changing
    permissions, quotas or deleting the space.
    """

    def __init__(self, user: Any) -> None:
        self.user = user
        self._links: dict[int, dict[str, Any]] = {}

    def get(self, space: Space) -> dict[str, Any]:
        if space.pk not in self._links:
            self.prime([space])
        return self._links[space.pk]

    def prime(self, spaces: list[Space], *, refresh: bool = False) -> None:
        todo = [space for space in spaces if refresh or space.pk not in self._links]
        if not todo:
            return
        site_ids_of = {space.pk: {row.site_id for row in space.placements.all()} for space in todo}
        all_sites = set().union(*site_ids_of.values())
        if not all_sites:
            for space in todo:
                self._links[space.pk] = {"relationships": {"parents": [], "children": []}, "nested_shares": []}
            return

        # site -> sorted mountpoints and mountpoint -> spaces, for parents (ancestor lookups) and
        # children (a bisect range of the sorted list).
        spaces_on: dict[int, dict[str, list[dict[str, Any]]]] = {}
        visible = permissions.restrict(Space.objects.filter(placements__site_id__in=all_sites), self.user)
        for pk, name, mountpoint, site_id in visible.values_list(
            "pk", "name", "mountpoint", "placements__site_id"
        ):
            if site_id in all_sites:
                entries = spaces_on.setdefault(site_id, {}).setdefault(mountpoint, [])
                if all(entry["id"] != pk for entry in entries):
                    entries.append({"id": pk, "name": name, "mountpoint": mountpoint})
        sorted_on = {site_id: sorted(by_path) for site_id, by_path in spaces_on.items()}

        # Shares of the spaces the caller may see (the permission subquery is reused, not redone).
        shares_on: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        for kind, model in (("nfs", NfsShare), ("smb", SmbShare)):
            rows = model.objects.filter(space__in=visible.values("pk"), space__placements__site_id__in=all_sites)
            for pk, name, path, space_id, site_id in rows.values_list(
                "pk", "name", "path", "space_id", "space__placements__site_id"
            ):
                if site_id in all_sites:
                    shares_on.setdefault(site_id, []).append(
                        (path, {"type": kind, "id": pk, "name": name, "path": path, "space": space_id})
                    )

        for entries in shares_on.values():
            entries.sort(key=lambda item: item[0])
        share_paths_on = {site_id: [path for path, _ in entries] for site_id, entries in shares_on.items()}

        for space in todo:
            parents: dict[int, dict[str, Any]] = {}
            children: dict[int, dict[str, Any]] = {}
            nested: dict[tuple[str, int], dict[str, Any]] = {}
            prefix = space.mountpoint + "/"
            for site_id in site_ids_of[space.pk]:
                by_path = spaces_on.get(site_id, {})
                for ancestor in ancestors(space.mountpoint):
                    for entry in by_path.get(ancestor, []):
                        parents[entry["id"]] = entry
                paths = sorted_on.get(site_id, [])
                # Paths below ``prefix`` sort together, right after ``prefix`` itself.
                for path in paths[bisect.bisect_left(paths, prefix):]:
                    if not path.startswith(prefix):
                        break
                    for entry in by_path[path]:
                        children[entry["id"]] = entry
                on_site = shares_on.get(site_id, [])
                share_paths = share_paths_on.get(site_id, [])
                # Sorted paths: the mountpoint itself is one run, everything below it another,
                # ending before mountpoint + "0" ("0" is the character right after "/").
                runs = (
                    (bisect.bisect_left(share_paths, space.mountpoint),
                     bisect.bisect_right(share_paths, space.mountpoint)),
                    (bisect.bisect_left(share_paths, prefix),
                     bisect.bisect_left(share_paths, space.mountpoint + "0")),
                )
                for start, end in runs:
                    for _, share in on_site[start:end]:
                        nested[(share["type"], share["id"])] = share
            self._links[space.pk] = {
                "relationships": {
                    "parents": sorted(parents.values(), key=lambda item: item["mountpoint"]),
                    "children": sorted(children.values(), key=lambda item: item["mountpoint"]),
                },
                "nested_shares": sorted(nested.values(), key=lambda item: (item["path"], item["type"], item["id"])),
            }
