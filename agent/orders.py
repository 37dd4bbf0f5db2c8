"""The orders an agent serves (``agent.contract.AgentTask``): settings, inventory, spaces, shares,
targets and remote listings.

Each order is a plain function ``handler(ctx, order, task_id=...) -> results`` that raises
``OrderError`` (or any exception) to fail; ``run_order`` wraps it in the reporting protocol:

1. ``TaskResult(STARTED)`` to the hub,
2. the handler,
3. ``TaskResult(SUCCESS, results)`` or ``TaskResult(FAILURE, error)``.

The inventory order is the exception: its answer is the ``InventoryReport`` itself (carrying the
task id), which the hub applies and then marks the task finished. The control order
``agent.cancel`` (``apply_cancel``) is not answered at all: it only raises cancel flags, and the
cancelled data tasks' own reports tell the hub what stopped.

Redelivery: the broker may hand an order over twice (a worker lost, a visibility timeout). The
orders are idempotent, and those that change state are also *journaled*: their outcome is kept
in the state directory under the task id, and a second delivery re-sends that outcome instead
of applying the order again. Without it, an old ``configure_target`` redelivered after a
``remove_target`` would bring a removed target back, and an old settings push would undo a newer
one. Read-only orders (listing, inventory, settings report) simply run again.

Errors reported to the hub never contain credentials: the only secret an order carries is the
sealed ``credentials`` token, and no message quotes it or its decrypted value.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent import filesystems, inventory
from agent.config import LOG_LEVELS, AgentConfig, level_number
from agent.contract import AgentTask, HubTask, TaskResult
from agent.drivers.base import DriverError
from agent.heartbeat import Send
from agent.state import StateDir, StateError

logger = logging.getLogger(__name__)

SETTING_LOG_LEVEL = "agent:log_level"
SETTING_HEARTBEAT = "agent:heartbeat_interval"
DIR_MODE = 0o755
_OCTAL_MODE = re.compile(r"^0?[0-7]{3,4}$")
# A remote listing filtered by a glob may have to read many store pages to fill one answer page;
# it stops after this long and returns what it has with a marker to go on (the hub waits for the
# answer only ``stat_timeout`` seconds, 10 by default).
LISTING_BUDGET = 5.0
MAX_LISTING_ITEMS = 1000


class OrderError(Exception):
    """The order cannot be carried out; the message goes to the hub as the task's error."""


@dataclass
class OrderContext:
    """What an order needs: the configuration, the state directory and a way to report."""

    config: AgentConfig
    state: StateDir
    send: Send
    # The log level currently applied in this process, so a settings check is cheap.
    applied: dict[str, Any] = field(default_factory=dict)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def report(ctx: OrderContext, result: TaskResult) -> None:
    ctx.send(HubTask.TASK_RESULT, {"report": dict(result)})


# --- settings -------------------------------------------------------------------------------------

def effective_settings(ctx: OrderContext) -> dict[str, Any]:
    """The agent settings in force: the hub's pushed values where valid, else the configuration's."""
    pushed = ctx.state.settings().get("settings") or {}
    level = str(pushed.get(SETTING_LOG_LEVEL) or "").upper()
    try:
        interval = float(pushed.get(SETTING_HEARTBEAT))
    except (TypeError, ValueError):
        interval = 0.0
    return {
        SETTING_LOG_LEVEL: level if level in LOG_LEVELS else ctx.config.log_level,
        SETTING_HEARTBEAT: interval if 0.5 <= interval <= 3600 else ctx.config.heartbeat_interval,
    }


def apply_stored_settings(ctx: OrderContext) -> None:
    """Apply the stored settings to this process if they changed since the last call.

    Each of the agent's processes calls this (before each task and each heartbeat), so a push
    received by one worker reaches them all without a restart. The check is one ``stat``.
    """
    mtime = ctx.state.settings_mtime()
    if mtime is not None and mtime == ctx.applied.get("mtime"):
        return
    level = effective_settings(ctx)[SETTING_LOG_LEVEL]
    if level != ctx.applied.get("level"):
        logging.getLogger().setLevel(level_number(level))
        if ctx.applied.get("level") is not None:
            logger.info("log level set to %s", level)
    ctx.applied.update(mtime=mtime, level=level)


def _check_site(ctx: OrderContext, order: dict[str, Any]) -> None:
    site = order.get("site")
    if site is not None and site != ctx.config.site:
        raise OrderError(f"order for site {site!r} reached the agent of site {ctx.config.site!r}")


def apply_settings(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> dict[str, Any]:
    """``agent.apply_settings``: store the complete settings, then apply what the agent understands."""
    _check_site(ctx, order)
    settings = order.get("settings")
    if not isinstance(settings, dict):
        raise OrderError("settings must be an object of key/value pairs")
    ignored = {}
    level = settings.get(SETTING_LOG_LEVEL)
    if level is not None and str(level).upper() not in LOG_LEVELS:
        ignored[SETTING_LOG_LEVEL] = f"{level!r} is not one of {', '.join(LOG_LEVELS)}"
    interval = settings.get(SETTING_HEARTBEAT)
    if interval is not None:
        try:
            if not 0.5 <= float(interval) <= 3600:
                raise ValueError
        except (TypeError, ValueError):
            ignored[SETTING_HEARTBEAT] = f"{interval!r} is not a number of seconds in 0.5..3600"
    ctx.state.save_settings({"site": ctx.config.site, "settings": settings, "task_id": task_id,
                             "applied_at": now_iso()})
    apply_stored_settings(ctx)
    return {"stored": len(settings), "effective": effective_settings(ctx), "ignored": ignored,
            "restart_needed": sorted(key for key in settings if key.endswith("_concurrency")
                                     and key.startswith("agent:"))}


def report_settings(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> dict[str, Any]:
    """``agent.report_settings``: what the agent has stored and what is in force."""
    _check_site(ctx, order)
    stored = ctx.state.settings()
    return {
        "site": ctx.config.site,
        "node": ctx.config.node,
        "settings": stored.get("settings") or {},
        "applied_at": stored.get("applied_at"),
        "applied_by_task": stored.get("task_id"),
        "effective": effective_settings(ctx),
    }


# --- inventory ------------------------------------------------------------------------------------

def send_inventory(ctx: OrderContext, *, task_id: str | None = None) -> dict[str, Any]:
    """Build and publish this node's ``InventoryReport`` (answering ``task_id`` when given)."""
    spaces = [str(record["mountpoint"]) for record in ctx.state.spaces() if isinstance(record.get("mountpoint"), str)]
    config = ctx.config
    storage = None  # POSIX: the mounts holding the roots, from statvfs
    if filesystems.configured_kind(config) == "gpfs":
        # Pools, filesets and quotas from the mm commands; a failure sends no report at all,
        # since the hub would replace the site's pools and filesets with a partial picture.
        storage = filesystems.open_filesystem("gpfs", config.roots, bin_dir=config.gpfs_bin_dir).inventory()
    report_ = inventory.build_report(site=config.site, node=config.node, roots=config.roots, spaces=spaces,
                                     budget=config.inventory_budget, task_id=task_id, storage=storage)
    ctx.send(HubTask.INVENTORY, {"report": dict(report_)})
    return dict(report_)


def refresh_inventory(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> None:
    """``agent.inventory``: the answer is the report itself (the hub finishes the task from it)."""
    _check_site(ctx, order)
    send_inventory(ctx, task_id=task_id)


# --- spaces ---------------------------------------------------------------------------------------

def _space_parts(ctx: OrderContext, mountpoint: Any) -> tuple[Path, list[str]]:
    """The allowed root holding ``mountpoint`` and the components below it; refuses anything else."""
    if not isinstance(mountpoint, str) or not mountpoint.startswith("/") or "\0" in mountpoint:
        raise OrderError("mountpoint must be an absolute path")
    parts = [part for part in mountpoint.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise OrderError("mountpoint must not contain '..'")
    if not ctx.config.roots:
        raise OrderError("this agent has no roots configured (roots / AGENT_ROOTS): it may create no directory")
    best: tuple[Path, list[str]] | None = None
    for root in ctx.config.roots:  # the innermost root holding the mountpoint
        root_parts = [part for part in str(root).split("/") if part]
        if parts[: len(root_parts)] == root_parts and (best is None or len(best[1]) > len(parts) - len(root_parts)):
            best = (root, parts[len(root_parts):])
    if best is None:
        allowed = ", ".join(str(root) for root in ctx.config.roots)
        raise OrderError(f"mountpoint {mountpoint!r} is outside this agent's roots ({allowed})")
    return best


def _mode(permission_mode: Any) -> int | None:
    """An explicit octal mode (``"2770"``), or None for GPFS ACL modes (``chmodAndSetAcl``...)."""
    text = str(permission_mode or "")
    return int(text, 8) if _OCTAL_MODE.match(text) else None


def make_space_dirs(root: Path, parts: list[str], *, mode: int | None) -> bool:
    """``mkdir -p root/parts`` one component at a time, never following a symlink.

    Each component is created (mode 0700, then chmod, so it is never briefly wider than asked)
    and opened with ``O_NOFOLLOW`` relative to its parent, so a symlink planted anywhere on the
    way cannot redirect the creation outside the root. Returns whether the last one was created;
    an existing last directory gets ``mode`` only when one was given explicitly.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    created = False
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = "/".join([str(root).rstrip("/"), *parts[: index + 1]])
                    raise OrderError(f"{where} exists and is not a directory (or is a symlink)") from None
                raise
            try:
                if made:
                    os.fchmod(child, (mode if mode is not None else DIR_MODE) if last else DIR_MODE)
                elif last and mode is not None:
                    os.fchmod(child, mode)
            except BaseException:
                os.close(child)
                raise
            os.close(fd)
            fd = child
            created = made and last
    finally:
        os.close(fd)
    return created


def create_space(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> dict[str, Any]:
    """``agent.create_space``: make the space's directory under an allowed root (idempotent)."""
    mountpoint = order.get("mountpoint")
    root, parts = _space_parts(ctx, mountpoint)
    mode = _mode(order.get("permission_mode"))
    try:
        created = make_space_dirs(root, parts, mode=mode) if parts else False
    except OSError as exc:
        raise OrderError(f"cannot create {mountpoint}: {exc.strerror}") from None
    info = os.stat(mountpoint)
    notes = []
    if order.get("size"):
        notes.append("quota not applied: POSIX directories have no quota (GPFS filesets do)")
    if order.get("pool"):
        notes.append("pool ignored: a POSIX filesystem has a single pool")
    if mode is None and order.get("permission_mode"):
        notes.append(f"permission_mode {order['permission_mode']} is a GPFS ACL mode; chmod semantics apply")
    ctx.state.save_space(str(mountpoint), {
        "space": order.get("space"), "mountpoint": mountpoint, "size": order.get("size"),
        "pool": order.get("pool"), "permission_mode": order.get("permission_mode"), "task_id": task_id,
        "at": now_iso(),
    })
    return {"mountpoint": mountpoint, "created": created, "mode": f"{info.st_mode & 0o7777:04o}", "notes": notes}


# --- shares ---------------------------------------------------------------------------------------

def apply_shares(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> dict[str, Any]:
    """``agent.apply_shares``: record the space's complete share set (empty: withdraw them).

    Only recorded in the state directory: rendering ``/etc/exports`` and ``smb.conf`` and
    reloading the servers is not done by this agent yet.
    """
    space_uuid, nfs, smb = order.get("space_uuid"), order.get("nfs"), order.get("smb")
    if not isinstance(space_uuid, str) or not space_uuid:
        raise OrderError("space_uuid is required")
    if not isinstance(nfs, list) or not isinstance(smb, list):
        raise OrderError("nfs and smb must be lists")
    try:
        if not nfs and not smb:
            removed = ctx.state.remove_shares(space_uuid)
            return {"space": order.get("space"), "nfs": 0, "smb": 0, "withdrawn": removed, "rendered": False}
        ctx.state.save_shares(space_uuid, {**order, "task_id": task_id, "at": now_iso()})
    except StateError as exc:
        raise OrderError(str(exc)) from None
    return {"space": order.get("space"), "nfs": len(nfs), "smb": len(smb), "rendered": False,
            "note": "share set recorded; exports and smb.conf are not rendered by this agent"}


# --- targets --------------------------------------------------------------------------------------

def _endpoint(order: dict[str, Any]) -> str:
    name = order.get("endpoint_name")
    if not isinstance(name, str) or not name or len(name) > 1024:
        raise OrderError("endpoint_name is required")
    return name


def configure_target(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> dict[str, Any]:
    """``agent.configure_target``: keep the target, its bucket and credentials, encrypted at rest.

    ``credentials`` (a Fernet token made with the agent key) is decrypted and stored inside the
    encrypted record. An order without credentials keeps the ones already stored for the same
    bucket (``credentials_ref``), so a change to a target's options does not lose them.
    """
    from agent.drivers.registry import open_store

    endpoint = _endpoint(order)
    bucket, target = order.get("bucket"), order.get("target")
    if not isinstance(bucket, dict) or not isinstance(target, dict):
        raise OrderError("target and bucket must be objects")
    ref = order.get("credentials_ref") if isinstance(order.get("credentials_ref"), dict) else {}
    try:
        token = order.get("credentials")
        if token:
            credentials = ctx.state.decrypt_order_secret(str(token))
            if not isinstance(credentials, dict):
                raise OrderError("the decrypted credentials are not an object of fields")
            how = "stored"
        else:
            try:
                previous = ctx.state.load_target(endpoint)
            except StateError:  # sealed with a former agent key: unreadable, so replaced
                previous = None
            same = previous is not None and previous.get("credentials_ref") == ref
            credentials = (previous or {}).get("credentials") or {} if same else {}
            how = "kept" if credentials else "none"
        try:
            store = open_store({**bucket, **credentials})
            store.close()
        except (DriverError, ValueError, TypeError) as exc:
            raise OrderError(f"the target's bucket settings are not usable: {exc}") from None
        ctx.state.save_target(endpoint, {"target": target, "bucket": bucket, "credentials_ref": ref,
                                         "credentials": credentials, "task_id": task_id, "at": now_iso()})
    except StateError as exc:
        raise OrderError(str(exc)) from None
    return {"endpoint_name": endpoint, "storage_type": bucket.get("storage_type"), "credentials": how}


def remove_target(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> dict[str, Any]:
    """``agent.remove_target``: forget the target (remote objects are untouched). Idempotent."""
    endpoint = _endpoint(order)
    return {"endpoint_name": endpoint, "removed": ctx.state.remove_target(endpoint)}


_GLOB = re.compile(r"[*?\[]")


def list_target(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> dict[str, Any]:
    """``agent.list_target``: one page of the target's remote listing (see ``ListTargetOrder``).

    ``path`` is a key prefix (``""`` the top, ``"a/b/"`` a "directory") or a glob matching keys
    at one level (``"aws/cats*.jpg"``; not recursive). Directories are the common prefixes at
    that level. ``next_marker`` (empty on the last page) is the last entry this page consumed.
    """
    endpoint = _endpoint(order)
    path = order.get("path") or ""
    marker = order.get("marker") or ""
    if not isinstance(path, str) or not isinstance(marker, str):
        raise OrderError("path and marker must be text")
    path = path.lstrip("/")
    if ".." in path.split("/"):
        raise OrderError("path must not contain '..'")
    raw_max = order.get("max_items")
    try:
        max_items = 100 if raw_max is None else int(raw_max)
        if isinstance(raw_max, bool) or (isinstance(raw_max, float) and not raw_max.is_integer()):
            raise ValueError
    except (TypeError, ValueError):
        raise OrderError("max_items must be an integer") from None
    if not 1 <= max_items <= MAX_LISTING_ITEMS:
        raise OrderError(f"max_items must be within 1..{MAX_LISTING_ITEMS}")
    glob = _GLOB.search(path)
    prefix = path[: glob.start()] if glob else path
    pattern = path if glob else None

    try:
        store = ctx.state.open_target(endpoint)
    except StateError as exc:
        raise OrderError(str(exc)) from None
    except DriverError as exc:
        raise OrderError(str(exc)) from None
    files: list[dict[str, Any]] = []
    directories: list[dict[str, Any]] = []
    deadline = time.monotonic() + LISTING_BUDGET
    cursor, next_marker = marker, ""
    try:
        while True:
            page = store.list(prefix, marker=cursor, max_items=max_items, delimiter="/")
            entries = sorted([(info.key, info) for info in page.objects] + [(p, None) for p in page.prefixes],
                             key=lambda item: item[0])
            stopped_early = False
            for position, (entry, info) in enumerate(entries):
                cursor = entry
                if pattern is None or fnmatch.fnmatchcase(entry.rstrip("/"), pattern):
                    name = entry.rstrip("/").rsplit("/", 1)[-1]
                    if info is None:
                        directories.append({"name": name, "path": entry, "size": None, "type": "directory"})
                    else:
                        files.append({"name": name, "path": entry, "size": info.size, "type": "file"})
                if len(files) + len(directories) >= max_items:
                    stopped_early = position < len(entries) - 1 or page.next_marker is not None
                    break
            if len(files) + len(directories) >= max_items:
                next_marker = cursor if stopped_early else ""
                break
            if page.next_marker is None:
                next_marker = ""
                break
            cursor = page.next_marker
            if time.monotonic() > deadline:
                next_marker = cursor  # out of time: hand back what we have, and where to go on
                break
    except DriverError as exc:
        raise OrderError(f"listing target {endpoint!r} failed: {exc}") from None
    finally:
        store.close()
    return {
        "path": path,
        "marker": marker,
        "next_marker": next_marker,
        "files": files,
        "directories": directories,
        "summary": {"files": len(files), "directories": len(directories),
                    "bytes": sum(item["size"] or 0 for item in files), "truncated": bool(next_marker)},
    }


def sync_accounts(ctx: OrderContext, order: dict[str, Any], *, task_id: str) -> dict[str, Any]:
    """``agent.sync_accounts``: not served yet; answered with a failure instead of left pending."""
    raise OrderError("this agent does not synchronise accounts yet")


# --- the reporting protocol -----------------------------------------------------------------------

# --- cancel (a control order) ---------------------------------------------------------------------

MAX_CANCEL_IDS = 10_000


def apply_cancel(ctx: OrderContext, order: Any, *, task_id: str) -> list[str]:
    """``agent.cancel``: raise the cancel flag of each id (task or job) in ``order["task_ids"]``.

    Running data tasks of those ids see the flag between files and answer the rest of their
    paths ``aborted``; tasks not started yet answer all of them so when they arrive. The order
    is idempotent (a flag raised twice is one flag) and answers nothing: a malformed one is
    logged and dropped, since no hub task waits for it. Returns the ids flagged.
    """
    ids = order.get("task_ids") if isinstance(order, dict) else None
    if not isinstance(ids, list) or len(ids) > MAX_CANCEL_IDS:
        logger.warning("%s[%s]: malformed cancel order dropped (task_ids must be a list of at most %d ids)",
                       AgentTask.CANCEL, task_id, MAX_CANCEL_IDS)
        return []
    flagged: list[str] = []
    for value in ids:
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            logger.warning("%s[%s]: id %r is not a task or job id; ignored", AgentTask.CANCEL, task_id, value)
            continue
        ctx.state.request_cancel(str(value))
        flagged.append(str(value))
    shown = ", ".join(flagged[:20]) + (f"... ({len(flagged)} in all)" if len(flagged) > 20 else "")
    logger.info("%s[%s]: cancel requested for %s", AgentTask.CANCEL, task_id, shown or "nothing")
    return flagged


Handler = Callable[..., Any]


@dataclass(frozen=True)
class OrderSpec:
    handler: Handler
    journaled: bool  # changes state: a redelivery re-sends the recorded outcome
    answers_itself: bool = False  # the handler publishes its own answer (inventory)


ORDERS: dict[str, OrderSpec] = {
    AgentTask.APPLY_SETTINGS: OrderSpec(apply_settings, journaled=True),
    AgentTask.REPORT_SETTINGS: OrderSpec(report_settings, journaled=False),
    AgentTask.INVENTORY: OrderSpec(refresh_inventory, journaled=False, answers_itself=True),
    AgentTask.CREATE_SPACE: OrderSpec(create_space, journaled=True),
    AgentTask.APPLY_SHARES: OrderSpec(apply_shares, journaled=True),
    AgentTask.CONFIGURE_TARGET: OrderSpec(configure_target, journaled=True),
    AgentTask.REMOVE_TARGET: OrderSpec(remove_target, journaled=True),
    AgentTask.LIST_TARGET: OrderSpec(list_target, journaled=False),
    AgentTask.SYNC_ACCOUNTS: OrderSpec(sync_accounts, journaled=False),
}


def run_order(ctx: OrderContext, name: str, order: Any, *, task_id: str) -> TaskResult | None:
    """Carry out order ``name`` and report it (see the module docstring). Returns the final report
    (None for an order that answers itself and succeeded)."""
    spec = ORDERS[name]
    if spec.journaled:
        done = ctx.state.journal_get(task_id)
        if done is not None:
            logger.info("%s[%s] was already applied; re-sending its outcome", name, task_id)
            final = TaskResult(task_id=task_id, state=done["state"], at=done.get("at") or now_iso())
            if "results" in done:
                final["results"] = done["results"]
            if "error" in done:
                final["error"] = done["error"]
            report(ctx, final)
            return final
    report(ctx, TaskResult(task_id=task_id, state="STARTED", at=now_iso()))
    try:
        if not isinstance(order, dict):
            raise OrderError("the order must be an object")
        results = spec.handler(ctx, order, task_id=task_id)
    except OrderError as exc:
        final = TaskResult(task_id=task_id, state="FAILURE", error=str(exc), at=now_iso())
        logger.warning("%s[%s] failed: %s", name, task_id, exc)
    except Exception as exc:  # noqa: BLE001 - any fault is the order's failure, reported to the hub
        logger.exception("%s[%s] failed", name, task_id)
        final = TaskResult(task_id=task_id, state="FAILURE", error=f"{type(exc).__name__}: {exc}", at=now_iso())
    else:
        if spec.answers_itself:
            return None
        final = TaskResult(task_id=task_id, state="SUCCESS", results=results, at=now_iso())
    if spec.journaled:
        try:
            ctx.state.journal_put(task_id, {"task": name, **{k: v for k, v in final.items() if k != "task_id"}})
        except OSError as exc:  # the order is done: the hub must still hear about it
            logger.error("%s[%s]: outcome not journaled (a redelivery would apply it again): %s", name, task_id,
                         exc)
    report(ctx, final)
    return final
