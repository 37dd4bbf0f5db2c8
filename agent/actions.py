"""The data tasks workflows chain (migrate, recall, reverse stub, delete, move, stat, list) as pure
functions: a batch of ``PathItem`` in, one ``PathOutcome`` per item out, in the same order.

The Celery tasks (``agent.tasks``) stay thin: they build an ``ActionContext`` from the agent's
configuration and call these. Everything about a file's safety is the filesystem driver's
(``agent.drivers.posix``); this module adds what a *batch* needs:

* **One bad path never fails the batch.** Every expected fault of a path (refused, missing,
  busy, a store error, a failed verification, an unexpected exception) becomes that path's
  ``failed`` (or ``aborted``/``skipped``) outcome with a message. A function raises only when the
  whole batch is meaningless: an option of the wrong type, or a named target that cannot be
  opened (the hub records that as the task's Failure).
* **Statuses.** ``processed``: done now. ``skipped``: nothing to do (already done, a directory or
  a symlink, a remote copy on another target). ``failed``: could not be done, the message says
  why. ``aborted``: not attempted because the batch was cancelled, or - with ``abort_missing`` -
  the path is missing (the product's rule: a missing path is ``failed`` unless the caller said a
  missing path is expected, as site sync does, and then it is ``aborted`` so its chain stops
  quietly). Other paths of the batch go on either way.
* **Twice equals once.** Every action is idempotent per path (the driver's guarantee: migrating
  a migrated file, recalling a resident one, stubbing an existing stub of the same object are
  ``skipped``), so a redelivered task does no harm and reports what is already done.
* **Concurrency.** Files up to ``chunk_size`` bytes (read whole, uploaded in one request) run in
  a thread pool of ``concurrency`` threads, which is what makes thousands of small files fast;
  larger files stream one at a time on the calling thread, each with the driver's own multipart
  concurrency, so memory stays bounded by ``concurrency * chunk_size`` plus one large transfer's
  buffers. Paths naming the same inode (hard links, a path listed twice) always run one after
  the other in one thread: the driver's per-file lock would otherwise make the second fail
  "busy" instead of reporting it already migrated. ``move``, ``stat`` and ``list`` run in order
  on the calling thread (renames may depend on each other; metadata calls are cheap).
* **Stores.** ``ActionContext.open_target(name)`` is called lazily, at most once per target and
  thread; drivers documented thread-safe (S3, Azure, folder, memory, or any store with a true
  ``thread_safe`` attribute) are shared by the pool, others (GCS) get one instance per thread.
  The batch closes every store it opened when it ends, so ``open_target`` must hand out new
  stores (or ones whose ``close`` is harmless).
* **Retries.** Only ``TransientError`` is retried, by the transfer layer with ``ctx.retry``.
* **Cancel and progress.** ``should_cancel`` is checked before each path and between chunks
  (from worker threads too); paths not started after a cancel are ``aborted`` ("not attempted").
  ``progress`` receives a ``BatchProgress`` at most every ``progress_interval`` seconds and once
  at the end, serialised under a lock (possibly from a worker thread); an exception it raises is
  logged and ignored.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import fnmatch
import logging
import os
import stat as stat_mod
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from agent import lane as lanes
from agent.contract import FileDetails, PathItem, PathOutcome, PathStatus
from agent.drivers.base import DEFAULT_CHUNK, DriverError, ObjectStore, PermanentError
from agent.drivers.fs import FolderStore
from agent.drivers.gpfs import GpfsFilesystem
from agent.drivers.posix import (
    EntryKind,
    FileEntry,
    PathRefused,
    PathResult,
    PosixFilesystem,
    ResultStatus,
    SpacePath,
    StagedMigrate,
)
from agent.hsm.state import HsmRecord, HsmStateError, read_record
from agent.lane import Group, LaneGroup, LanePool, LaneResult, LaneSettings, RecallGroup, RecallSettings, shared_pool
from agent.libc import libc_function
from agent.transfer import CancelFn, ProgressFn, RetryPolicy

log = logging.getLogger(__name__)

#: The drivers whose data path the small-file lane reproduces: the POSIX driver, and the GPFS
#: driver, which inherits it unchanged (``tests/agent/test_gpfs_driver.py`` checks it overrides
#: none of it). Any other subclass goes the general way.
LANE_DRIVERS: tuple[type[PosixFilesystem], ...] = (PosixFilesystem, GpfsFilesystem)

#: ``list`` is one of this module's actions, so the builtin is spelled out in annotations.
Outcomes = builtins.list[PathOutcome]
OpenTarget = Callable[[str], ObjectStore]

PROCESSED: PathStatus = "processed"
FAILED: PathStatus = "failed"
ABORTED: PathStatus = "aborted"
SKIPPED: PathStatus = "skipped"

#: storage types whose driver documents its instances as safe to share between threads.
THREAD_SAFE_STORAGE_TYPES = frozenset({"s3", "azure", "fs", "memory"})


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands. ``bytes_done`` counts the bytes moved so far by running transfers
    plus the whole size of every finished path (whatever its status); ``bytes_total`` is the sum
    of the sizes known when the batch started (the regular files there, and ``size`` hints), so
    the two meet at the end unless some sizes were unknown (reverse stubs without a hint)."""

    paths_done: int
    paths_total: int
    bytes_done: int
    bytes_total: int


BatchProgressFn = Callable[[BatchProgress], None]


@dataclass(frozen=True)
class ActionContext:
    """What a batch runs against: the site's space roots and how to reach its targets.

    ``filesystem`` is built from ``roots`` (and ``key_prefix``, ``chunk_size``, ``retry``) when not
    given; pass one to use a subclass such as the GPFS driver.
    """

    roots: Sequence[str | os.PathLike[str]]
    open_target: OpenTarget
    should_cancel: CancelFn | None = None
    progress: BatchProgressFn | None = None
    progress_interval: float = 1.0
    concurrency: int = 8
    chunk_size: int = DEFAULT_CHUNK
    key_prefix: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    filesystem: PosixFilesystem | None = None
    #: The small-file lane for migrations to a folder target (``agent.lane``): None turns it off,
    #: 0 runs it on the calling thread, N in N worker processes shared by the process's batches.
    lane_workers: int | None = 0
    #: Whether the lane uses its C core (``agent.native``) where it is built; off: its Python loop.
    lane_native: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"concurrency must be a whole number >= 1, got {self.concurrency!r}")
        if self.lane_workers is not None and (isinstance(self.lane_workers, bool) or
                                              not isinstance(self.lane_workers, int) or self.lane_workers < 0):
            raise ValueError(f"lane_workers must be None or a whole number >= 0, got {self.lane_workers!r}")
        if self.filesystem is None:
            fs = PosixFilesystem(self.roots, key_prefix=self.key_prefix, chunk_size=self.chunk_size,
                                 retry=self.retry)
            object.__setattr__(self, "filesystem", fs)

    @property
    def fs(self) -> PosixFilesystem:
        assert self.filesystem is not None  # set in __post_init__
        return self.filesystem

    @property
    def lane_pool(self) -> LanePool | None:
        return None if self.lane_workers is None else shared_pool(self.lane_workers)


# --- stores --------------------------------------------------------------------------------------

def is_thread_safe(store: ObjectStore) -> bool:
    """Whether one instance of ``store`` may serve several threads (see the module docstring)."""
    flag = getattr(store, "thread_safe", None)
    if flag is not None:
        return bool(flag)
    return store.storage_type in THREAD_SAFE_STORAGE_TYPES


class _StorePool:
    """The stores one batch opened: shared between threads when the driver allows it, else one
    per thread. Closed together when the batch ends."""

    def __init__(self, open_target: OpenTarget) -> None:
        self._open_target = open_target
        self._lock = threading.Lock()
        self._shared: dict[str, ObjectStore] = {}
        self._local = threading.local()
        self._opened: builtins.list[ObjectStore] = []

    def get(self, name: str) -> ObjectStore:
        """The store for endpoint ``name``. Raises KeyError (unknown endpoint), DriverError."""
        with self._lock:
            shared = self._shared.get(name)
        if shared is not None:
            return shared
        mine: dict[str, ObjectStore] = self._local.__dict__.setdefault("stores", {})
        if name in mine:
            return mine[name]
        try:
            store = self._open_target(name)
        except (KeyError, DriverError):
            raise
        except Exception as exc:  # a configuration fault: this target's paths fail, with the reason
            raise PermanentError(f"target {name!r} cannot be opened: {type(exc).__name__}: {exc}") from None
        with self._lock:
            self._opened.append(store)
            if is_thread_safe(store):
                return self._shared.setdefault(name, store)
        mine[name] = store
        return store

    def by_name(self) -> Mapping[str, ObjectStore]:
        """A mapping that opens stores on lookup, for operations that find the target in the file's
        own record (recall, delete)."""
        return _LazyStores(self)

    def close(self) -> None:
        with self._lock:
            opened, self._opened, self._shared = self._opened, [], {}
        seen: set[int] = set()
        for store in opened:
            if id(store) in seen:
                continue
            seen.add(id(store))
            try:
                store.close()
            except Exception:  # closing is best effort; the batch's outcomes are already decided
                log.warning("closing %r failed", store, exc_info=True)


class _LazyStores(Mapping[str, ObjectStore]):
    """Looked up by name only (``stores[target]``); iterating it shows nothing."""

    def __init__(self, pool: _StorePool) -> None:
        self._pool = pool

    def __getitem__(self, name: str) -> ObjectStore:
        return self._pool.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


# --- the batch engine ----------------------------------------------------------------------------

@dataclass
class _Path:
    """One item of the batch as planned: its path as given, and what ``lstat`` saw then."""

    index: int
    item: Mapping[str, Any]
    path: str
    st: os.stat_result | None = None
    early: PathOutcome | None = None  # decided without running the operation
    sp: SpacePath | None = None  # where ``resolve`` placed it

    @property
    def size(self) -> int | None:
        if self.st is not None and stat_mod.S_ISREG(self.st.st_mode):
            return self.st.st_size
        hint = self.item.get("size")
        return hint if isinstance(hint, int) and not isinstance(hint, bool) and hint >= 0 else None


Operation = Callable[[_Path, ProgressFn], PathOutcome]
Stage = Callable[[_Path, ProgressFn], StagedMigrate]
#: Small files staged per flush of the store (``_Batch.run_staged``); each holds two descriptors
#: (the file, its directory) until its commit.
STAGE_GROUP = 256


def outcome(path: str, status: PathStatus, message: str = "", **extra: Any) -> PathOutcome:
    """A ``PathOutcome`` without empty fields."""
    out: dict[str, Any] = {"path": path, "status": status}
    if message:
        out["message"] = message
    out.update({name: value for name, value in extra.items() if value is not None})
    return cast(PathOutcome, out)


def _missing(path: str, abort_missing: bool) -> PathOutcome:
    if abort_missing:
        return outcome(path, ABORTED, "missing: aborted (abort_missing)")
    return outcome(path, FAILED, "missing: no such file or directory")


class _Batch:
    """Runs one operation over a batch: plans, schedules, reports progress, collects outcomes."""

    def __init__(self, ctx: ActionContext, name: str, jobid: object, items: Sequence[PathItem], *,
                 needs_existing: bool = True, abort_missing: bool = False) -> None:
        self.ctx = ctx
        self.fs = ctx.fs
        self.name = name
        self.jobid = jobid
        self.abort_missing = abort_missing
        self.stores = _StorePool(ctx.open_target)
        self._parents: dict[str, tuple[str, str]] = {}  # each parent directory's place (``resolve``)
        self._items = items
        self._needs_existing = needs_existing
        self.paths: builtins.list[_Path] = []  # planned so far, in batch order (see ``_planning``)
        self.outcomes: builtins.list[PathOutcome | None] = [None] * len(items)
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}
        self._paths_done = 0
        self._bytes_done = 0
        self._bytes_total = 0  # of the paths planned so far
        self._cancelled = False
        self._last_report = 0.0

    def __enter__(self) -> _Batch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stores.close()

    # --- planning ---------------------------------------------------------------------------------
    def _plan(self, index: int, item: PathItem, needs_existing: bool) -> _Path:
        raw = item.get("path") if isinstance(item, Mapping) else None
        if not isinstance(raw, str) or not raw:
            shown = raw if isinstance(raw, str) else ""
            return _Path(index, {}, shown, early=outcome(shown, FAILED, f"bad path item: {item!r:.200}"))
        p = _Path(index, item, raw)
        try:
            sp = p.sp = self.fs.resolve(raw, parents=self._parents)
        except PathRefused as exc:
            p.early = outcome(raw, FAILED, f"refused: {exc}")
            return p
        try:
            p.st = os.lstat(sp.path)  # the parents are resolved inside the space; the name is not followed
        except (FileNotFoundError, NotADirectoryError):
            if needs_existing:
                p.early = _missing(raw, self.abort_missing)
        except OSError:
            pass  # the operation meets the same error and reports it
        return p

    def _planning(self) -> Iterator[_Path]:
        """Plan the paths not planned yet, in order, yielding each: the small-file lane starts on
        the first groups while the rest are planned; everything else plans the whole batch first
        (``_plan_all``)."""
        while len(self.paths) < len(self._items):
            index = len(self.paths)
            p = self._plan(index, self._items[index], self._needs_existing)
            self.paths.append(p)
            if p.early is None:
                self._bytes_total += p.size or 0
            yield p

    def _plan_all(self) -> None:
        for _ in self._planning():
            pass

    def _units(self, paths: Sequence[_Path]) -> builtins.list[builtins.list[_Path]]:
        """Paths grouped so that every path of one inode runs in one unit, in batch order."""
        units: dict[object, builtins.list[_Path]] = {}
        for p in paths:
            st = p.st
            key: object = (st.st_dev, st.st_ino) if st is not None and stat_mod.S_ISREG(st.st_mode) else p.index
            units.setdefault(key, []).append(p)
        return [*units.values()]

    def _is_small(self, unit: Sequence[_Path], unknown: int) -> bool:
        return all((unknown if p.size is None else p.size) <= self.ctx.chunk_size for p in unit)

    # --- running ----------------------------------------------------------------------------------
    def run(self, operation: Operation, *, concurrent: bool = True, unknown_size_is_large: bool = False,
            lane: Callable[[str, tuple[str, ...]], RecallGroup | None] | None = None) -> Outcomes:
        """Run ``operation`` on every planned path; ``concurrent=False`` keeps everything in order
        on this thread. A path of unknown size (nothing there yet, no ``size`` hint) counts as
        small unless ``unknown_size_is_large`` (it will be downloaded). With ``lane`` (recall's
        groups, see ``_recall_lane``), the small files go to the lane's processes first."""
        started = time.monotonic()
        if lane is not None and self.ctx.lane_pool is not None:
            self._run_lane(lane, self.ctx.lane_pool, [], lanes.run_recall_group)
        self._plan_all()
        units = self._units([p for p in self.paths if self.outcomes[p.index] is None])
        unknown = self.ctx.chunk_size + 1 if unknown_size_is_large else 0
        small = [u for u in units if concurrent and self._is_small(u, unknown)]
        large = [u for u in units if not (concurrent and self._is_small(u, unknown))]
        workers = min(self.ctx.concurrency, len(small))
        if workers <= 1:
            for unit in units:
                self._run_unit(unit, operation)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"agent-{self.name}") as pool:
                futures = [pool.submit(self._run_unit, unit, operation) for unit in small]
                for unit in large:  # streamed here, one at a time, while the pool works
                    self._run_unit(unit, operation)
                for future in futures:
                    future.result()
        return self._results(started)

    def run_staged(self, operation: Operation, stage: Stage, store: ObjectStore,
                   lane: Callable[[str], LaneSettings] | None = None) -> Outcomes:
        """``run`` for migrate, with durability shared per group of small files: each group's
        files are staged (hashed, uploaded, kept locked) in the pool, then ``store.flush()``
        makes the group's objects durable at once, then each is committed (verified, checked,
        recorded) in the pool; once every path is done, one ``sync_roots`` makes the records
        durable before any outcome is returned. Large files and paths sharing an inode run as in
        ``run`` (each durable on its own). With ``lane`` (the settings for a space root), the
        small files go through the small-file lane first (``agent.lane``); what it hands back
        goes the way just described."""
        started = time.monotonic()
        committed: builtins.list[_Path] = []
        try:
            if lane is not None and self.ctx.lane_pool is not None:
                settings: dict[str, LaneSettings] = {}

                def migrate_group(root: str, rels: tuple[str, ...]) -> LaneGroup:
                    if root not in settings:
                        settings[root] = lane(root)
                    return LaneGroup(settings[root], rels)

                self._run_lane(migrate_group, self.ctx.lane_pool, committed, None)
            self._plan_all()
            units = self._units([p for p in self.paths if self.outcomes[p.index] is None])
            staged_units = [u for u in units if len(u) == 1 and u[0].early is None and self._is_small(u, 0)]
            chosen = {id(u) for u in staged_units}
            others = [u for u in units if id(u) not in chosen]
            workers = max(1, min(self.ctx.concurrency, len(staged_units)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"agent-{self.name}") as executor:
                each = executor.map
                for unit in others:  # before the groups: a unit of hard links is not staged
                    self._run_unit(unit, operation)
                for start in range(0, len(staged_units), STAGE_GROUP):
                    group = [u[0] for u in staged_units[start:start + STAGE_GROUP]]
                    waiting = [w for w in each(lambda p: self._stage(p, stage), group) if w is not None]
                    if not waiting:
                        continue
                    try:
                        store.flush()
                    except DriverError as exc:
                        for p, staged in waiting:
                            staged.abandon()
                            self._finish(p, outcome(p.path, FAILED, f"{type(exc).__name__}: {exc}", key=exc.key))
                        continue
                    for p, result in each(lambda w: (w[0], self._commit(w[0], w[1])), waiting):
                        self._finish(p, result)
                        committed.append(p)
        finally:
            if committed:
                try:
                    self.fs.sync_roots()
                except OSError as exc:  # the records may not be durable: do not report them done
                    for p in committed:
                        done = self.outcomes[p.index]
                        if done is not None and done["status"] == PROCESSED:
                            self.outcomes[p.index] = outcome(p.path, FAILED, f"recorded, but the filesystem "
                                                             f"could not be synced: {exc.strerror or exc}")
        return self._results(started)

    def _run_lane(self, group_for: Callable[[str, tuple[str, ...]], Group | None], pool: LanePool,
                  committed: builtins.list[_Path],
                  work: Callable[[Group], builtins.list[LaneResult]] | None) -> None:
        """Plan the batch while the lane works: each regular small file with one link goes into
        a group of ``STAGE_GROUP`` of its space root (``group_for(root, rels)``; None: not for
        the lane), sent to the lane (``work``) as soon as it is full. What the lane finishes
        gets its outcome; the rest (not chosen, handed back, or not sent after a cancel) keeps
        none, for the general path. A file with other links is left to the general path, which
        runs every path of one inode in one unit."""
        members: dict[int, builtins.list[_Path]] = {}
        chunk = self.ctx.chunk_size

        def groups() -> Iterator[Group]:
            filling: dict[str, builtins.list[_Path]] = {}

            def group_of(root: str, part: builtins.list[_Path]) -> Group | None:
                group = group_for(root, tuple(cast(SpacePath, p.sp).rel for p in part))
                if group is not None:
                    members[id(group)] = part
                return group

            for p in self._planning():
                st, sp = p.st, p.sp
                if (p.early is None and sp is not None and sp.rel and st is not None and stat_mod.S_ISREG(st.st_mode)
                        and st.st_nlink == 1 and st.st_size <= chunk):
                    part = filling.setdefault(sp.root, [])
                    part.append(p)
                    if len(part) == STAGE_GROUP:
                        if (group := group_of(sp.root, part)) is not None:
                            yield group
                        filling[sp.root] = []
            for root, part in filling.items():
                if part and (group := group_of(root, part)) is not None:
                    yield group

        for group, results in pool.run(groups(), stop=self._stopped, work=work):
            finished: builtins.list[tuple[_Path, PathOutcome]] = []
            for p, result in zip(members.pop(id(group)), results, strict=True):
                if result is None:
                    continue  # the general path decides (a record, a symlink, a taken key...)
                status, message, key = result
                finished.append((p, outcome(p.path, cast(PathStatus, status), message, key=key, size=p.size)))
                if status == PROCESSED:
                    committed.append(p)
            self._finish_many(finished)

    def _results(self, started: float) -> Outcomes:
        """Every path's outcome, in input order, after the last progress report and a log line."""
        self._report(force=True)
        results = [o for o in self.outcomes if o is not None]
        assert len(results) == len(self._items)
        counts = Counter(o["status"] for o in results)
        log.info("%s job=%s: %d paths in %.1fs: %s", self.name, self.jobid, len(results),
                 time.monotonic() - started, dict(counts))
        return results

    def _stage(self, p: _Path, stage: Stage) -> tuple[_Path, StagedMigrate] | None:
        """Stage one path; a path finished here (or failed, or cancelled) gets its outcome now."""
        if self._stopped():
            self._finish(p, outcome(p.path, ABORTED, "not attempted: cancelled"))
            return None
        staged: StagedMigrate | None = None

        def op(path: _Path, progress: ProgressFn) -> PathOutcome:
            nonlocal staged
            staged = stage(path, progress)
            if staged.result is not None:
                return self.from_result(path, staged.result)
            return outcome(path.path, PROCESSED)

        result = self._attempt(p, op)
        if staged is not None and staged.waiting:
            return p, staged
        self._finish(p, result)
        return None

    def _commit(self, p: _Path, staged: StagedMigrate) -> PathOutcome:
        return self._attempt(p, lambda path, progress: self.from_result(path, staged.commit()))

    def _stopped(self) -> bool:
        if not self._cancelled and self.ctx.should_cancel is not None and self.ctx.should_cancel():
            self._cancelled = True
        return self._cancelled

    def _run_unit(self, unit: Sequence[_Path], operation: Operation) -> None:
        for p in unit:
            if p.early is not None:
                self._finish(p, p.early)
            elif self._stopped():
                self._finish(p, outcome(p.path, ABORTED, "not attempted: cancelled"))
            else:
                self._finish(p, self._attempt(p, operation))

    def _attempt(self, p: _Path, operation: Operation) -> PathOutcome:
        try:
            return operation(p, lambda done, total: self._moved(p.index, done))
        except PathRefused as exc:
            return outcome(p.path, FAILED, f"refused: {exc}")
        except (FileNotFoundError, NotADirectoryError):
            return _missing(p.path, self.abort_missing)
        except DriverError as exc:
            return outcome(p.path, FAILED, f"{type(exc).__name__}: {exc}", key=exc.key)
        except OSError as exc:
            return outcome(p.path, FAILED, exc.strerror or str(exc))
        except Exception as exc:  # a bug must not take the other paths down with it
            log.exception("%s job=%s: unexpected error on %r", self.name, self.jobid, p.path)
            return outcome(p.path, FAILED, f"internal error: {type(exc).__name__}: {exc}")

    def from_result(self, p: _Path, result: PathResult, **extra: Any) -> PathOutcome:
        """The driver's ``PathResult`` as this batch's outcome for ``p``."""
        if (result.status in (ResultStatus.SKIPPED, ResultStatus.ABORTED) and result.message.startswith("missing")
                and not os.path.lexists(p.path)):
            return _missing(p.path, self.abort_missing)  # vanished after planning: one wording for all
        return outcome(p.path, cast(PathStatus, str(result.status)), result.message, key=result.key, size=p.size,
                       **extra)

    # --- progress ---------------------------------------------------------------------------------
    def _moved(self, index: int, done: int) -> None:
        with self._lock:
            self._in_flight[index] = done
            self._report_locked(force=False)

    def _finish(self, p: _Path, result: PathOutcome) -> None:
        self._finish_many([(p, result)])

    def _finish_many(self, finished: Sequence[tuple[_Path, PathOutcome]]) -> None:
        """Record outcomes (a lane group's at once: one lock, one progress check)."""
        with self._lock:
            for p, result in finished:
                self.outcomes[p.index] = result
                self._in_flight.pop(p.index, None)
                self._paths_done += 1
                if p.early is None:
                    self._bytes_done += p.size or 0
            self._report_locked(force=False)

    def _report(self, *, force: bool) -> None:
        with self._lock:
            self._report_locked(force=force)

    def _report_locked(self, *, force: bool) -> None:
        if self.ctx.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < self.ctx.progress_interval:
            return
        self._last_report = now
        done = self._bytes_done + sum(self._in_flight.values())
        state = BatchProgress(self._paths_done, len(self._items), done, self._bytes_total)
        try:
            self.ctx.progress(state)
        except Exception:  # reporting must never fail a transfer
            log.warning("%s job=%s: progress callback failed", self.name, self.jobid, exc_info=True)


# --- option checks -------------------------------------------------------------------------------

def _whole(name: str, value: object, *, minimum: int = 0, optional: bool = False) -> int | None:
    """Options arrive as JSON: a wrong type fails the whole batch before any path is touched."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _name(name: str, value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


# --- migrate ---------------------------------------------------------------------------------------

def migrate(ctx: ActionContext, paths: Sequence[PathItem], *, target: str, premigrate: bool = False,
            overwrite: bool = False, abort_missing: bool = False, skip_modified_during_migrate: bool = False,
            stub_size: int = 0, verify_content: bool = False, jobid: object = None) -> Outcomes:
    """Copy each file to ``target`` and, unless ``premigrate``, release its blocks (leave a stub
    keeping the first ``stub_size`` bytes).

    Per the driver: blocks go only after the remote copy verified (``verify_content`` re-reads it
    instead of trusting the store's size and recorded checksum); a file modified during the
    upload is never released (``skipped`` with ``skip_modified_during_migrate``, else
    ``failed``); an object of other content at the key is never replaced unless ``overwrite``
    (a unique sibling key is used). Each outcome's ``key`` names the object. Raises ValueError
    for a bad option, and the store's error when ``target`` cannot be opened.
    """
    target = cast(str, _name("target", target))
    premigrate, overwrite = _flag("premigrate", premigrate), _flag("overwrite", overwrite)
    abort_missing = _flag("abort_missing", abort_missing)
    skip_modified = _flag("skip_modified_during_migrate", skip_modified_during_migrate)
    verify_content = _flag("verify_content", verify_content)
    stub = cast(int, _whole("stub_size", stub_size))
    with _Batch(ctx, "migrate", jobid, paths, abort_missing=abort_missing) as batch:
        store = batch.stores.get(target)  # an unknown or broken target fails the batch before any path
        options: dict[str, Any] = dict(premigrate=premigrate, overwrite=overwrite, abort_missing=abort_missing,
                                       skip_modified_during_migrate=skip_modified, stub_size=stub, target=target,
                                       verify_content=verify_content, should_cancel=ctx.should_cancel)

        def one(p: _Path, progress: ProgressFn) -> PathOutcome:
            result = batch.fs.migrate(p.path, batch.stores.get(target), progress=progress, **options)
            return batch.from_result(p, result)

        if not is_thread_safe(store) or ctx.concurrency == 1:
            # One store per thread: nothing to flush once for all. Concurrency 1: every path in
            # batch order on the calling thread, each durable on its own.
            return batch.run(one)
        store.defer_durability()

        def stage(p: _Path, progress: ProgressFn) -> StagedMigrate:
            return batch.fs.stage_migrate(p.path, store, progress=progress, **options)

        lane = _lane_settings(ctx, store, target, premigrate=premigrate, overwrite=overwrite,
                              verify_content=verify_content, skip_modified=skip_modified, stub_size=stub)
        return batch.run_staged(one, stage, store, lane)


def _lane_settings(ctx: ActionContext, store: ObjectStore, target: str, *, premigrate: bool, overwrite: bool,
                   verify_content: bool, skip_modified: bool,
                   stub_size: int) -> Callable[[str], LaneSettings] | None:
    """How the small-file lane would run for a space root, or None where it does not apply:
    it writes only what a folder target with xattr metadata keeps, never replaces an object
    (``overwrite``) nor re-reads one (``verify_content``), and knows only the POSIX driver's
    behaviour (``LANE_DRIVERS``; another subclass may change it)."""
    if (ctx.lane_workers is None or overwrite or verify_content or type(ctx.fs) not in LANE_DRIVERS
            or not isinstance(store, FolderStore) or store.metadata_mode() != "xattr"):
        return None
    fs = ctx.fs
    return lambda root: LaneSettings(space_root=root, target_root=store.root, target_name=target,
                                     key_prefix=fs.key_prefix, premigrate=premigrate, skip_modified=skip_modified,
                                     stub_size=stub_size, chunk_size=fs.chunk_size, durable=store.fsync,
                                     native=ctx.lane_native)


# --- recall ----------------------------------------------------------------------------------------

def recall(ctx: ActionContext, paths: Sequence[PathItem], *, verify: bool = True, delete_remote: bool = False,
           default_uid: int | None = None, default_gid: int | None = None, restore_times: bool = True,
           target: str | None = None, abort_missing: bool = False, jobid: object = None) -> Outcomes:
    """Bring stubs' bytes back in place; a resident file is ``skipped``.

    The store is the one each file's record names, or ``target`` for all of them (recall from
    another endpoint holding the same objects). ``verify=False`` skips the checksum comparison
    (such a file ends unmanaged if its bytes differ from the record). ``default_uid`` /
    ``default_gid`` replace an owner unknown on this system; ``restore_times=False`` leaves
    mtime/atime at the time of the recall. ``delete_remote`` deletes the remote copy after a
    verified recall, or for a resident file with a remote copy, making it unmanaged.
    """
    verify, delete_remote = _flag("verify", verify), _flag("delete_remote", delete_remote)
    restore_times, abort_missing = _flag("restore_times", restore_times), _flag("abort_missing", abort_missing)
    uid = _whole("default_uid", default_uid, optional=True)
    gid = _whole("default_gid", default_gid, optional=True)
    target = _name("target", target, optional=True)
    with _Batch(ctx, "recall", jobid, paths, abort_missing=abort_missing) as batch:
        if target is not None:
            batch.stores.get(target)
        by_name = batch.stores.by_name()

        def one(p: _Path, progress: ProgressFn) -> PathOutcome:
            stores = batch.stores.get(target) if target is not None else by_name
            result = batch.fs.recall(p.path, stores, verify=verify, delete_remote=delete_remote, default_uid=uid,
                                     default_gid=gid, restore_times=restore_times, progress=progress,
                                     should_cancel=ctx.should_cancel)
            return batch.from_result(p, result)

        lane = None if target is not None or delete_remote else _recall_lane(
            ctx, batch.stores, verify=verify, restore_times=restore_times, default_uid=uid, default_gid=gid)
        return batch.run(one, lane=lane)


def _recall_lane(ctx: ActionContext, stores: _StorePool, *, verify: bool, restore_times: bool,
                 default_uid: int | None, default_gid: int | None,
                 ) -> Callable[[str, tuple[str, ...]], RecallGroup | None] | None:
    """How small stubs are recalled in groups by the lane, or None where it does not apply (no
    lane, or a driver not in ``LANE_DRIVERS``). A group goes to the lane when the first of its files
    with a record names a folder target; its files naming another target are handed back. The
    lane runs ``PosixFilesystem.recall_group``: ``recall``'s steps with one ``syncfs`` per step
    of a group, in the lane's processes or, where it has none (a prefork child), in this thread
    - still ahead of the batch's threads, which the interpreter lock serializes anyway."""
    pool = ctx.lane_pool
    if pool is None or type(ctx.fs) not in LANE_DRIVERS:
        return None
    chunk_size = ctx.fs.chunk_size

    def group_for(root: str, rels: tuple[str, ...]) -> RecallGroup | None:
        name = next((r.target for r in (_peek_record(os.path.join(root, rel)) for rel in rels) if r is not None),
                    None)
        if name is None:
            return None
        try:
            store = stores.get(name)
        except (KeyError, DriverError):
            return None  # the general path reports it, file by file
        if not isinstance(store, FolderStore):
            return None
        settings = RecallSettings(space_root=root, target_name=name, target_root=store.root,
                                  metadata=store.metadata_mode(), chunk_size=chunk_size, verify=verify,
                                  restore_times=restore_times, default_uid=default_uid, default_gid=default_gid)
        return RecallGroup(settings, rels)

    return group_for


def _peek_record(path: str) -> HsmRecord | None:
    try:
        return read_record(path)
    except (OSError, HsmStateError):
        return None


# --- reverse stub ----------------------------------------------------------------------------------

def reverse_stub(ctx: ActionContext, paths: Sequence[PathItem], *, target: str, hydrate: bool = False,
                 verify: bool = True, default_uid: int | None = None, default_gid: int | None = None,
                 jobid: object = None) -> Outcomes:
    """Create a stub at each path for an object of ``target``: original size (sparse), mode,
    owner and times from the object's metadata, recorded as migrated.

    The object is the item's ``key`` (a previous step's ``PathOutcome.key``), else the key a
    migration of this path would use (the space-relative path under the key prefix). An
    existing file is never replaced; a stub of the same object already there is ``skipped``.
    With ``hydrate`` the stub is then recalled (verified unless ``verify=False``).
    """
    target = cast(str, _name("target", target))
    hydrate, verify = _flag("hydrate", hydrate), _flag("verify", verify)
    uid = _whole("default_uid", default_uid, optional=True)
    gid = _whole("default_gid", default_gid, optional=True)
    with _Batch(ctx, "reverse_stub", jobid, paths, needs_existing=False) as batch:
        batch.stores.get(target)

        def one(p: _Path, progress: ProgressFn) -> PathOutcome:
            key = p.item.get("key")
            if key is not None and (not isinstance(key, str) or not key):
                return outcome(p.path, FAILED, f"bad object key {key!r:.200}")
            key = key or batch.fs.object_key(batch.fs.resolve(p.path))
            store = batch.stores.get(target)
            stubbed = batch.fs.reverse_stub(p.path, store, key, target=target, default_uid=uid, default_gid=gid)
            if not hydrate or stubbed.status not in (ResultStatus.PROCESSED, ResultStatus.SKIPPED):
                return batch.from_result(p, stubbed)
            recalled = batch.fs.recall(p.path, store, verify=verify, default_uid=uid, default_gid=gid,
                                       progress=progress, should_cancel=ctx.should_cancel)
            if recalled.status == ResultStatus.SKIPPED:  # resident already: this is a re-run
                return batch.from_result(p, stubbed)
            status = cast(PathStatus, str(recalled.status))
            if recalled.status == ResultStatus.PROCESSED:
                return outcome(p.path, status, f"{stubbed.message}; {recalled.message}", key=key)
            return outcome(p.path, status, f"{stubbed.message}, but not hydrated: {recalled.message}", key=key)

        return batch.run(one, unknown_size_is_large=hydrate)


# --- delete (the remote copy) ------------------------------------------------------------------------

def delete(ctx: ActionContext, paths: Sequence[PathItem], *, target: str | None = None,
           abort_missing: bool = False, jobid: object = None) -> Outcomes:
    """Delete the remote copy of each resident file, which becomes unmanaged. The local file is
    never touched.

    A stub is ``failed`` (its remote object is the only copy: recall it first); a file without a
    remote copy, or whose copy is on another target than ``target`` (when given), is ``skipped``.
    """
    target = _name("target", target, optional=True)
    abort_missing = _flag("abort_missing", abort_missing)
    with _Batch(ctx, "delete", jobid, paths, abort_missing=abort_missing) as batch:
        if target is not None:
            batch.stores.get(target)
        by_name = batch.stores.by_name()

        def one(p: _Path, progress: ProgressFn) -> PathOutcome:
            if target is not None:
                record = batch.fs.stat(p.path).record
                if record is not None and record.target != target:
                    return outcome(p.path, SKIPPED, f"its remote copy is on target {record.target!r}, not "
                                   f"{target!r}", key=record.key, size=p.size)
                stores: Mapping[str, ObjectStore] = {target: batch.stores.get(target)}
            else:
                stores = by_name
            return batch.from_result(p, batch.fs.delete_remote(p.path, stores))

        return batch.run(one)


# --- move --------------------------------------------------------------------------------------------

_RENAME_NOREPLACE = 1
def _renameat2() -> Any:
    return libc_function("renameat2", ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)


def _rename_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
    """Rename, failing with FileExistsError instead of replacing an existing destination.

    ``renameat2(RENAME_NOREPLACE)`` does this atomically. Where the C library or filesystem lacks
    it, a file is linked to its new name (``link`` never replaces) and then unlinked from the old
    one - a crash in between leaves two names, never none - and a directory is checked first
    (a small race, only on such systems).
    """
    fn = _renameat2()
    if fn:
        if fn(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    if stat_mod.S_ISDIR(os.stat(src, dir_fd=src_dir, follow_symlinks=False).st_mode):
        if _exists_at(dst_dir, dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        os.rename(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
        return
    os.link(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=False)
    os.unlink(src, dir_fd=src_dir)


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _destination_for(path: str, destination: str | None, source_root: str | None) -> str:
    if destination is None:
        raise _NoDestination("no destination: give the task's destination or the item's own")
    norm = os.path.normpath(path)
    if source_root is None:
        return os.path.join(destination, os.path.basename(norm))
    rel = os.path.relpath(norm, os.path.normpath(source_root))
    if rel == "." or rel == ".." or rel.startswith("../"):
        raise _NoDestination(f"not under source_root {source_root!r}")
    return os.path.join(destination, rel)


class _NoDestination(Exception):
    pass


def move(ctx: ActionContext, paths: Sequence[PathItem], *, destination: str | None = None,
         source_root: str | None = None, overwrite: bool = False, jobid: object = None) -> Outcomes:
    """Rename each path (file, stub, directory or symlink) within its space, keeping its HSM state.

    The new path is the item's ``destination``, else ``destination`` (a directory) joined with
    the path relative to ``source_root`` (or with its name, without ``source_root``). Missing
    parent directories are created. The record lives on the inode, so a stub stays a stub with
    the same remote object (whose stored ``path`` metadata keeps the old name). An existing
    destination is replaced only with ``overwrite`` and never when it is a directory. A re-run
    finds the source gone and the destination there: ``skipped``. Only renames: a destination in
    another space or filesystem is ``failed``. Runs in order on the calling thread.
    """
    overwrite = _flag("overwrite", overwrite)
    destination = _name("destination", destination, optional=True)
    source_root = _name("source_root", source_root, optional=True)
    with _Batch(ctx, "move", jobid, paths, needs_existing=False) as batch:
        fs = batch.fs

        def one(p: _Path, progress: ProgressFn) -> PathOutcome:
            own = p.item.get("destination")
            if own is not None and (not isinstance(own, str) or not own):
                return outcome(p.path, FAILED, f"bad destination {own!r:.200}")
            try:
                dest = own or _destination_for(p.path, destination, source_root)
            except _NoDestination as exc:
                return outcome(p.path, FAILED, str(exc))
            src, dst = fs.resolve(p.path), fs.resolve(dest)
            if not src.rel or not dst.rel:
                raise PathRefused("a space root is never moved or replaced")
            if src.root != dst.root:
                return outcome(p.path, FAILED, "the destination is in another space; move renames within one")
            if src.rel == dst.rel:
                return outcome(p.path, SKIPPED, "already at the destination", destination=dest)
            if dst.rel.startswith(src.rel + "/"):
                return outcome(p.path, FAILED, "a directory cannot move into itself")
            src_dir = fs._open_dir(src.root, src.parts[:-1])
            try:
                dst_dir = fs._open_dir(dst.root, dst.parts[:-1], create=True)
                try:
                    return _move_at(p, src_dir, src.parts[-1], dst_dir, dst.parts[-1], dest, overwrite)
                finally:
                    os.close(dst_dir)
            finally:
                os.close(src_dir)

        return batch.run(one, concurrent=False)


def _move_at(p: _Path, src_dir: int, src: str, dst_dir: int, dst: str, dest: str, overwrite: bool) -> PathOutcome:
    try:
        st = os.stat(src, dir_fd=src_dir, follow_symlinks=False)
    except FileNotFoundError:
        if _exists_at(dst_dir, dst):
            return outcome(p.path, SKIPPED, "already moved: the source is gone and the destination exists",
                           destination=dest)
        raise
    try:
        there = os.stat(dst, dir_fd=dst_dir, follow_symlinks=False)
    except FileNotFoundError:
        there = None
    try:
        if there is None:
            _rename_noreplace(src_dir, src, dst_dir, dst)
        elif (there.st_dev, there.st_ino) == (st.st_dev, st.st_ino):
            return outcome(p.path, FAILED, "the destination is another name (hard link) of the same file")
        elif not overwrite:
            return outcome(p.path, FAILED, "the destination exists; not replaced (overwrite not set)")
        elif stat_mod.S_ISDIR(there.st_mode) or stat_mod.S_ISDIR(st.st_mode):
            return outcome(p.path, FAILED, "a directory is never replaced, nor replaces a file")
        else:
            os.rename(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)  # atomic replace, as asked
    except FileExistsError:
        return outcome(p.path, FAILED, "the destination exists; not replaced (overwrite not set)")
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return outcome(p.path, FAILED, "the destination is on another filesystem; move only renames")
        raise
    os.fsync(dst_dir)  # the rename is durable before it is reported
    os.fsync(src_dir)
    key = None
    if stat_mod.S_ISREG(st.st_mode):
        record = _record_at(dst_dir, dst)
        key = record.key if record is not None else None
    replaced = " (replaced the file there)" if there is not None else ""
    return outcome(p.path, PROCESSED, f"moved to {dest}{replaced}", destination=dest, key=key, size=p.size)


def _record_at(dir_fd: int, name: str) -> HsmRecord | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return read_record(fd)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


# --- stat and list (the file browser) -----------------------------------------------------------------

def details(entry: FileEntry, path: str) -> FileDetails:
    """The browser's view of one entry, shown under ``path`` (the caller's spelling of it)."""
    out: dict[str, Any] = {
        "name": os.path.basename(path.rstrip("/")) or path, "path": path,
        "type": cast(Literal["file", "directory", "symlink", "other"], str(entry.kind)), "size": entry.size,
        "allocated": entry.blocks * 512, "mode": entry.mode, "uid": entry.uid, "gid": entry.gid,
        "mtime_ns": entry.mtime_ns, "atime_ns": entry.atime_ns, "ctime_ns": entry.ctime_ns, "inode": entry.inode,
        "nlink": entry.nlink, "state": str(entry.state), "stale": entry.stale,
    }
    if entry.record is not None:
        out["target"], out["key"] = entry.record.target, entry.record.key
    if entry.kind == EntryKind.SYMLINK:
        try:
            out["link"] = os.readlink(entry.path)
        except OSError:
            pass
    if entry.error:
        out["error"] = entry.error
    return cast(FileDetails, out)


def stat(ctx: ActionContext, paths: Sequence[PathItem], *, jobid: object = None) -> Outcomes:
    """Each path's details (``entry``) with its HSM state; a symlink is described, not followed."""
    with _Batch(ctx, "stat", jobid, paths) as batch:

        def one(p: _Path, progress: ProgressFn) -> PathOutcome:
            entry = batch.fs.stat(p.path)
            return outcome(p.path, PROCESSED, entry=details(entry, os.path.normpath(p.path)), size=entry.size)

        return batch.run(one, concurrent=False)


def list_directory(ctx: ActionContext, paths: Sequence[PathItem], *, max_items: int = 1000, marker: str = "",
                   pattern: str | None = None, jobid: object = None) -> Outcomes:
    """One page of each directory's entries (``entries``), sorted by name, with HSM state.

    Entries are those named after ``marker`` (exclusive) that match the glob ``pattern`` (on the
    name; ``*`` matches dots too); ``next_marker`` is set when more follow. Only the page's
    entries are stat'ed, so paging a huge directory costs one name listing per page. Exported as
    ``list``.
    """
    max_items = cast(int, _whole("max_items", max_items, minimum=1))
    if not isinstance(marker, str):
        raise ValueError(f"marker must be a string, got {marker!r}")
    pattern = _name("pattern", pattern, optional=True)
    with _Batch(ctx, "list", jobid, paths) as batch:
        fs = batch.fs

        def one(p: _Path, progress: ProgressFn) -> PathOutcome:
            if fs.stat(p.path).kind != EntryKind.DIRECTORY:
                return outcome(p.path, FAILED, "not a directory")
            sp = fs.resolve(p.path)
            dir_fd = fs._open_dir(sp.root, sp.parts)  # no symlink on the way, even one swapped in since
            try:
                names = sorted(name for name in os.listdir(dir_fd)
                               if name > marker and (pattern is None or fnmatch.fnmatchcase(name, pattern)))
                page = names[:max_items]
                shown = os.path.normpath(p.path)
                entries: builtins.list[FileDetails] = []
                for name in page:
                    try:
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed since the listing
                    entry = fs._entry(sp.root, f"{sp.rel}/{name}" if sp.rel else name, st)
                    entries.append(details(entry, os.path.join(shown, name)))
            finally:
                os.close(dir_fd)
            more = page[-1] if len(names) > max_items else None
            return outcome(p.path, PROCESSED, entries=entries, next_marker=more)

        return batch.run(one, concurrent=False)


list = list_directory  # noqa: A001 - the task's name in the wire contract (HsmTask.LIST)
