"""Use cases of buckets and external targets, and the hooks that follow their site tasks.

A target lives in the configuration of the agents of the sites it is available on. Creating or
changing a target sends ``CONFIGURE_TARGET`` to each of those sites; when an agent confirms, the
site joins ``configured_on_sites`` (``is_ready`` means every site confirmed). Taking a site away
or deleting the target sends ``REMOVE_TARGET``. Orders carry the target and its bucket *without
credentials*; configure orders carry them sealed with the site's agent key (``credentials``, see
``agent.contract.TargetOrder``), so a secret never sits in a ``SettingsTask`` row, in clear in a
broker message, or in the API's task listing.

Deleting a bucket that targets use is two-phase (a soft delete), so the hub never forgets a
target that an agent still has configured:

1. DELETE marks the bucket ``soft_deleting`` and sends ``REMOVE_TARGET`` for each of its targets
   to each site the target is on; the API answers 202 with those tasks.
2. When the last of them succeeds, ``_on_remove_target_finished`` deletes the targets and the
   bucket. If one fails, the bucket stays soft-deleting, its ``deletion_error`` says which
   removal failed and why, and DELETE again re-sends the failed removals.

While a bucket is soft-deleting, it and its targets refuse changes (409) and it takes no new
target (400). None of this deletes remote objects: removing a target from a site removes the
agent's configuration only, and migrated data stays in the bucket.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, connection, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError

from agent.contract import ListTargetOrder, TargetOrder
from hub import configuration, permissions
from hub.api.exceptions import AgentUnavailable, Conflict
from sites.models import DEFAULT_QUEUE, Bucket, ExternalTarget, SettingsTask, Site
from sites.services.nodes import live_queues
from sites.services.site_tasks import on_finish, send_site_task

logger = logging.getLogger(__name__)

TaskType, State = SettingsTask.TaskType, SettingsTask.State

# What an agent learns about a bucket: everything but the credentials.
BUCKET_ORDER_FIELDS = (
    "id", "name", "label", "storage_type", "endpoint", "port", "scheme", "region", "ssl_verify",
    "storage_account", "container", "credentials_file", "migration_target_folder", "advanced_settings",
    "soft_deleting",
)
SECRET_FIELDS = Bucket.SECRET_FIELDS
# A remote listing page is bounded whatever the configuration says (the answer travels through
# the broker and the database).
MAX_LISTING_ITEMS = 1000
# Polling the task row while an agent lists: quick at first (listings usually take well under a
# second), then backing off so a slow agent costs few queries.
POLL_FIRST_DELAY, POLL_MAX_DELAY = 0.05, 0.5

BEING_DELETED = "The bucket is being deleted (its targets are being removed from the sites); it cannot be changed."
TARGET_BUCKET_BEING_DELETED = (
    "The target's bucket is being deleted; the target is removed with it and cannot be changed."
)


class NoLiveAgent(APIException):
    """503: no site where the target is available has an agent online to do the work."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "No agent is online on the sites where the target is available."
    default_code = "no_live_agent"


class AgentFailed(APIException):
    """502: the agent answered, with an error or with something that is not the contract."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "The site's agent could not do it."
    default_code = "agent_error"


# --- orders ------------------------------------------------------------------------------------

def bucket_order(bucket: Bucket) -> dict[str, Any]:
    """The bucket as an agent is told about it: no credentials (they go by ``credentials_ref``)."""
    return {name: getattr(bucket, name) for name in BUCKET_ORDER_FIELDS}


def target_order(target: ExternalTarget) -> TargetOrder:
    """``agent.configure_target`` / ``agent.remove_target`` payload for ``target``."""
    space = target.space
    return TargetOrder(
        endpoint_name=target.endpoint_name,
        target={
            "id": target.pk,
            "name": target.name,
            "local_file_regex": target.local_file_regex,
            "backup_only": target.backup_only,
            "backup_site": target.backup_site_id,
            "delete_on_recall": target.delete_on_recall,
            "enabled": target.enabled,
            "advanced_settings": target.advanced_settings,
            "space": {"id": space.pk, "name": space.name, "mountpoint": space.mountpoint},
        },
        bucket=bucket_order(target.bucket),
        credentials_ref={"bucket": target.bucket_id},
    )


def _send(site: Site, tasktype: str, order: TargetOrder, *, actor: Any, what: str,
          sealed: dict[str, Any] | None = None) -> SettingsTask:
    return send_site_task(site, tasktype, dict(order), actor=actor, friendly_name=what[:255], sealed=sealed)


def bucket_credentials(bucket: Bucket) -> dict[str, str]:
    """The bucket's secrets, for sealing into a configure order (never stored in the order row)."""
    return {name: getattr(bucket, name) for name in SECRET_FIELDS if getattr(bucket, name)}


def _sites_of(target: ExternalTarget) -> list[Site]:
    """Every site whose agent may hold the target: where it is available or was confirmed."""
    sites = {site.pk: site for site in target.available_on_sites.all()}
    for site in target.configured_on_sites.all():
        sites.setdefault(site.pk, site)
    return [sites[pk] for pk in sorted(sites)]


def _targets_of(bucket: Bucket) -> list[ExternalTarget]:
    targets = list(
        ExternalTarget.objects.filter(bucket=bucket)
        .select_related("space")
        .prefetch_related("available_on_sites", "configured_on_sites")
        .order_by("pk")
    )
    for target in targets:
        target.bucket = bucket
    return targets


# --- buckets -----------------------------------------------------------------------------------

def create_bucket(actor: Any, data: dict[str, Any]) -> Bucket:
    """A bucket from validated values (``BucketSerializer.validate`` gives every column)."""
    return Bucket.objects.create(**data)


def _bucket_state(bucket: Bucket) -> tuple[Any, ...]:
    # Compared in memory only, to know whether agents must hear about a change.
    return tuple(getattr(bucket, name) for name in (*BUCKET_ORDER_FIELDS, *SECRET_FIELDS))


def update_bucket(actor: Any, bucket: Bucket, data: dict[str, Any]) -> Bucket:
    """Apply validated values; if anything changed, reconfigure every target of the bucket.

    A credential change is a change too: agents fetch credentials again when told to configure.
    """
    bucket = Bucket.objects.select_for_update().get(pk=bucket.pk)
    if bucket.soft_deleting:
        raise Conflict(BEING_DELETED)
    if data.get("storage_type", bucket.storage_type) != bucket.storage_type and bucket.external_targets.exists():
        raise ValidationError(
            {"storage_type": ["The storage type of a bucket used by external targets cannot change."]}
        )
    before = _bucket_state(bucket)
    for name, value in data.items():
        setattr(bucket, name, value)
    bucket.save()
    if _bucket_state(bucket) != before:
        for target in _targets_of(bucket):
            _configure(actor, target, list(target.available_on_sites.all()), why="bucket changed")
    return bucket


def delete_bucket(actor: Any, bucket: Bucket) -> list[SettingsTask] | None:
    """Delete ``bucket``: at once (None) when no agent holds one of its targets, otherwise start
    the soft delete and return the ``REMOVE_TARGET`` tasks sent (see the module docstring).

    On a bucket already soft-deleting: 409 while removals run; re-sends the failed ones.
    """
    bucket = Bucket.objects.select_for_update().get(pk=bucket.pk)
    targets = _targets_of(bucket)
    if bucket.soft_deleting:
        progress = removal_progress(bucket, targets)
        if progress.active:
            raise Conflict(
                f"The bucket is already being deleted: {len(progress.active)} removal task(s) "
                "are still running on the sites."
            )
        if progress.done:
            _delete_now(bucket, targets)
            return None
        return [
            _send(site, TaskType.REMOVE_TARGET, target_order(target), actor=actor,
                  what=f"Remove target {target.name} (bucket {bucket.name} deleted; retry)")
            for target, site in progress.failed + progress.missing
        ]
    pairs = [(target, site) for target in targets for site in _sites_of(target)]
    if not pairs:
        _delete_now(bucket, targets)
        return None
    Bucket.objects.filter(pk=bucket.pk).update(soft_deleting=True)
    bucket.soft_deleting = True  # the orders say so: the hook recognises its tasks by it
    return [
        _send(site, TaskType.REMOVE_TARGET, target_order(target), actor=actor,
              what=f"Remove target {target.name} (bucket {bucket.name} deleted)")
        for target, site in pairs
    ]


def _delete_now(bucket: Bucket, targets: list[ExternalTarget]) -> None:
    for target in targets:
        permissions.forget_object(target)
    ExternalTarget.objects.filter(bucket=bucket).delete()
    permissions.forget_object(bucket)
    bucket.delete()


@dataclass
class RemovalProgress:
    """Where a bucket's soft delete stands: per (target, site), the newest removal task."""

    active: list[tuple[ExternalTarget, Site]] = field(default_factory=list)
    failed: list[tuple[ExternalTarget, Site]] = field(default_factory=list)
    missing: list[tuple[ExternalTarget, Site]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not (self.active or self.failed or self.missing)


def _newest_removals(buckets: list[Bucket]) -> dict[int, dict[tuple[int, int], dict[str, Any]]]:
    """``{bucket id: {(target id, site id): newest soft-delete removal task}}`` in one query."""
    created = {bucket.pk: bucket.created for bucket in buckets}
    rows = (
        SettingsTask.objects.filter(
            tasktype=TaskType.REMOVE_TARGET,
            request__bucket__id__in=list(created),
            request__bucket__soft_deleting=True,
        )
        .order_by("pk")
        .values("pk", "state", "results", "site_id", "site__name", "request", "created")
    )
    newest: dict[int, dict[tuple[int, int], dict[str, Any]]] = {pk: {} for pk in created}
    for row in rows:
        bucket_id = row["request"]["bucket"]["id"]
        # A task older than the bucket belongs to a deleted bucket whose id was reused (SQLite).
        if bucket_id in created and row["created"] >= created[bucket_id]:
            newest[bucket_id][(row["request"]["target"]["id"], row["site_id"])] = row
    return newest


def _failure_message(row: dict[str, Any]) -> str:
    error = (row["results"] or {}).get("error") or "no reason given"
    return f"removing target '{row['request']['target'].get('name')}' from site '{row['site__name']}' failed: {error}"


def removal_progress(bucket: Bucket, targets: list[ExternalTarget]) -> RemovalProgress:
    newest = _newest_removals([bucket])[bucket.pk]
    progress = RemovalProgress()
    for target in targets:
        for site in _sites_of(target):
            row = newest.get((target.pk, site.pk))
            if row is None:
                progress.missing.append((target, site))
            elif row["state"] in SettingsTask.ACTIVE_STATES:
                progress.active.append((target, site))
            elif row["state"] == State.FAILURE:
                progress.failed.append((target, site))
                progress.errors.append(_failure_message(row))
    return progress


def deletion_errors(buckets: list[Bucket]) -> dict[int, str]:
    """``deletion_error`` of each soft-deleting bucket whose removal failed (one query, none if
    no bucket is soft-deleting)."""
    soft = [bucket for bucket in buckets if bucket.soft_deleting]
    if not soft:
        return {}
    errors: dict[int, str] = {}
    for bucket_id, rows in _newest_removals(soft).items():
        failed = [_failure_message(row) for _, row in sorted(rows.items()) if row["state"] == State.FAILURE]
        if failed:
            text = "; ".join(failed)
            errors[bucket_id] = (
                text[:1].upper() + text[1:]
                + ". The bucket and its targets are kept until every removal succeeds: DELETE the bucket again "
                "to retry the failed removals."
            )
    return errors


@on_finish(TaskType.REMOVE_TARGET)
def _on_remove_target_finished(task: SettingsTask) -> None:
    """The last successful removal of a soft-deleting bucket's targets deletes them and it."""
    request = task.request if isinstance(task.request, dict) else {}
    bucket_ref = request.get("bucket") if isinstance(request.get("bucket"), dict) else {}
    target_name = (request.get("target") or {}).get("name")
    if not bucket_ref.get("soft_deleting"):
        if task.state == State.FAILURE:
            logger.warning("removing target %s from site %s failed (task %s)", target_name, task.site, task.task_id)
        return
    # Locked so two sites reporting at once cannot both miss (or both do) the final deletion.
    bucket = Bucket.objects.select_for_update().filter(pk=bucket_ref.get("id"), soft_deleting=True).first()
    if bucket is None:
        return
    if task.state == State.FAILURE:
        logger.warning(
            "bucket %s stays soft-deleting: removing target %s from site %s failed (task %s)",
            bucket.pk, target_name, task.site, task.task_id,
        )
        return
    targets = _targets_of(bucket)
    if removal_progress(bucket, targets).done:
        logger.info("bucket %s deleted with its %d target(s): every site removed them", bucket.pk, len(targets))
        _delete_now(bucket, targets)


# --- targets -----------------------------------------------------------------------------------

def _configure(actor: Any, target: ExternalTarget, sites: list[Site], *, why: str) -> list[SettingsTask]:
    """Send the target's configuration to ``sites``; they count as configured once they confirm."""
    if not sites:
        return []
    target.configured_on_sites.remove(*sites)
    order = target_order(target)
    credentials = bucket_credentials(target.bucket)
    return [
        _send(site, TaskType.CONFIGURE_TARGET, order, actor=actor, what=f"Configure target {target.name} ({why})",
              sealed=credentials)
        for site in sorted(sites, key=lambda site: site.pk)
    ]


def reconfigure_site_targets(actor: Any, site: Site) -> list[SettingsTask]:
    """Re-send every target available on ``site`` (after its agent key changed)."""
    targets = ExternalTarget.objects.filter(available_on_sites=site, bucket__soft_deleting=False).select_related(
        "bucket", "space"
    )
    return [task for target in targets for task in _configure(actor, target, [site], why="new agent key")]


def _remove(actor: Any, order: TargetOrder, target: ExternalTarget, sites: list[Site], *, why: str) -> None:
    for site in sorted(sites, key=lambda site: site.pk):
        _send(site, TaskType.REMOVE_TARGET, order, actor=actor, what=f"Remove target {target.name} ({why})")


def _locked_target(pk: int) -> ExternalTarget:
    return (
        ExternalTarget.objects.select_for_update(of=("self",))
        .select_related("bucket", "space")
        .prefetch_related("available_on_sites", "configured_on_sites")
        .get(pk=pk)
    )


def create_target(actor: Any, data: dict[str, Any]) -> ExternalTarget:
    """A target on an existing bucket (``bucket_instance``) or a new one (``bucket``), configured
    on ``available_on_sites`` (default: every site of its space)."""
    data = dict(data)
    new_bucket = data.pop("bucket", None)
    bucket = data.pop("bucket_instance", None)
    if new_bucket is not None:
        if actor is not None and not permissions.has_model_perm(actor, Bucket, "add"):
            raise PermissionDenied(
                "Creating a bucket needs the permission to add buckets; give bucket_instance to use an existing one."
            )
        bucket = create_bucket(actor, new_bucket)
    else:
        bucket = Bucket.objects.select_for_update().get(pk=bucket.pk)
        if actor is not None and not permissions.has_object_perm(actor, bucket, permissions.VIEW):
            raise PermissionDenied("You may not use this bucket (you cannot view it).")
        if bucket.soft_deleting:
            raise ValidationError({"bucket_instance": ["This bucket is being deleted: it cannot get new targets."]})
    sites = data.pop("available_on_sites", None)
    if sites is None:
        sites = list(Site.objects.filter(space_placements__space=data["space"]).order_by("pk"))
    target = ExternalTarget.objects.create(bucket=bucket, **data)
    target.available_on_sites.set(sites)
    _configure(actor, target, sites, why="created")
    return target


def update_target(actor: Any, target: ExternalTarget, data: dict[str, Any]) -> ExternalTarget:
    """Apply validated values: sites taken away get ``REMOVE_TARGET``; new sites, and every site
    when what agents know of the target changed, get ``CONFIGURE_TARGET``."""
    target = _locked_target(target.pk)
    if target.bucket.soft_deleting:
        raise Conflict(TARGET_BUCKET_BEING_DELETED)
    before_order = target_order(target)
    before = {site.pk: site for site in target.available_on_sites.all()}
    data = dict(data)
    sites = data.pop("available_on_sites", None)
    for immutable in ("name", "space", "bucket", "bucket_instance"):  # validated as unchanged
        data.pop(immutable, None)
    for name, value in data.items():
        setattr(target, name, value)
    target.save()
    after = before if sites is None else {site.pk: site for site in sites}
    if sites is not None:
        target.available_on_sites.set(sites)
    removed = [site for pk, site in before.items() if pk not in after]
    if removed:
        target.configured_on_sites.remove(*removed)
        _remove(actor, before_order, target, removed, why="site taken away")
    changed = target_order(target) != before_order
    _configure(actor, target, [site for pk, site in after.items() if changed or pk not in before], why="changed")
    return target


def delete_target(actor: Any, target: ExternalTarget) -> None:
    """Delete the row now and tell every site holding the target to forget it.

    Remote objects are never deleted: files migrated through the target stay in the bucket.
    """
    target = _locked_target(target.pk)
    if target.bucket.soft_deleting:
        raise Conflict(TARGET_BUCKET_BEING_DELETED)
    _remove(actor, target_order(target), target, _sites_of(target), why="target deleted")
    permissions.forget_object(target)
    target.delete()


@on_finish(TaskType.CONFIGURE_TARGET)
def _on_configure_target_finished(task: SettingsTask) -> None:
    """A site confirmed the target: it counts as configured unless a newer order superseded this one."""
    request = task.request if isinstance(task.request, dict) else {}
    target_id = (request.get("target") or {}).get("id") if isinstance(request.get("target"), dict) else None
    if task.state != State.SUCCESS:
        logger.warning("configuring target %s on site %s failed (task %s)", target_id, task.site, task.task_id)
        return
    target = ExternalTarget.objects.filter(pk=target_id, available_on_sites=task.site_id).first()
    if target is None:
        return
    superseded = SettingsTask.objects.filter(
        site_id=task.site_id,
        tasktype__in=(TaskType.CONFIGURE_TARGET, TaskType.REMOVE_TARGET),
        request__target__id=target_id,
        pk__gt=task.pk,
    ).exists()
    if not superseded:
        target.configured_on_sites.add(task.site_id)


# --- remote listing ----------------------------------------------------------------------------

def default_max_items() -> int:
    return max(1, min(int(configuration.get("maximum_external_results")), MAX_LISTING_ITEMS))


def choose_listing_site(target: ExternalTarget) -> Site:
    """A site where the target is available and an agent consumes the default queue now;
    sites that confirmed the target first."""
    configured = {site.pk for site in target.configured_on_sites.all()}
    sites = sorted(target.available_on_sites.all(), key=lambda site: (site.pk not in configured, site.name))
    if not sites:
        raise NoLiveAgent("The target is not available on any site: add one to available_on_sites to list it.")
    for site in sites:
        if DEFAULT_QUEUE in live_queues(site):
            return site
    names = ", ".join(site.name for site in sites)
    raise NoLiveAgent(
        f"No agent is online on the sites where the target is available ({names}); "
        "listing the remote store needs one. See /api/nodes/ for their last heartbeats."
    )


@dataclass
class Listing:
    task: SettingsTask
    site: Site
    results: Any


def list_target_files(actor: Any, target: ExternalTarget, *, path: str, max_items: int, marker: str) -> Listing:
    """Ask one site's agent for a page of the target's remote listing and wait for the answer.

    Must run outside a transaction (the view is non-atomic): the order is committed and
    published before the wait, and each poll reads the row afresh. No answer within
    ``stat_timeout`` seconds: the task is failed (nobody waits for it any more) and 504 raised.
    """
    if target.bucket.soft_deleting:
        raise Conflict(TARGET_BUCKET_BEING_DELETED)
    site = choose_listing_site(target)
    order = ListTargetOrder(endpoint_name=target.endpoint_name, path=path, max_items=max_items, marker=marker)
    with transaction.atomic():
        task = send_site_task(site, TaskType.LIST_TARGET, dict(order), actor=actor,
                              friendly_name=f"List target {target.name}"[:255])
    timeout = int(configuration.get("stat_timeout"))
    _wait(task, timeout)
    if task.state not in SettingsTask.TERMINAL_STATES:
        with transaction.atomic():
            gave_up = task.transition(State.FAILURE, completed=timezone.now(), results={
                "error": f"No answer from the agent of site '{site.name}' within stat_timeout ({timeout} s).",
            })
        if gave_up:
            raise AgentUnavailable({
                "detail": f"The agent of site '{site.name}' did not answer within stat_timeout ({timeout} s).",
                "task_id": str(task.task_id),
                "site": site.name,
            })
        task.refresh_from_db(fields=["state", "results"])  # it finished at the last moment
    if task.state == State.FAILURE:
        results = task.results if isinstance(task.results, dict) else {}
        raise AgentFailed({
            "detail": f"The agent of site '{site.name}' could not list the target.",
            "error": str(results.get("error") or "no reason given"),
            "task_id": str(task.task_id),
            "site": site.name,
        })
    return Listing(task=task, site=site, results=task.results)


def _wait(task: SettingsTask, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = POLL_FIRST_DELAY
    while True:
        try:
            task.refresh_from_db(fields=["state", "results"])
        except OperationalError:
            # SQLite may refuse a read while the agent's report is being written ("database is
            # locked"); the next poll reads it. Other databases do not block readers.
            if connection.vendor != "sqlite":
                raise
            logger.debug("site task %s: row locked, polling again", task.task_id)
        remaining = deadline - time.monotonic()
        if task.state in SettingsTask.TERMINAL_STATES or remaining <= 0:
            return
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, POLL_MAX_DELAY)
