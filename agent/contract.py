"""The wire contract between the hub and site agents: task names and message shapes.

Both sides import this module (the hub to publish orders and read reports, the agent to serve
them), and it imports nothing but the standard library, so the agent stays free of Django.

Direction of travel:

* hub -> agent: an *order* published to the site's broker queue (``<site>`` for the default
  queue, ``<site>.<queue>`` for a function queue) under one of ``AgentTask``'s names, with the
  Celery task id equal to the hub's ``SettingsTask.task_id`` so reports can be matched.
* hub -> agent node: a *control order* (``AgentTask.CANCEL``) published to the queue of one
  node (``control_queue``), which a small worker of that node's agent serves even while every
  data slot is busy. The hub sends it to every node of the site.
* agent -> hub: a *report* published to the hub's queue (``HUB_QUEUE``) under one of
  ``HubTask``'s names. The hub worker applies it to the database; the agent never touches it.
  Orders report to ``HubTask.TASK_RESULT``; data tasks (``HsmTask``) to
  ``HubTask.JOB_TASK_RESULT``, with the reporting node's name.

Messages are JSON. Credentials never travel in an order in clear (see ``TargetOrder``).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

HUB_QUEUE = "hub"
DEFAULT_QUEUE = "default"


class AgentTask:
    """Names of the tasks an agent serves (orders from the hub)."""

    APPLY_SETTINGS = "agent.apply_settings"
    REPORT_SETTINGS = "agent.report_settings"
    INVENTORY = "agent.inventory"
    CREATE_SPACE = "agent.create_space"
    APPLY_SHARES = "agent.apply_shares"
    CONFIGURE_TARGET = "agent.configure_target"
    REMOVE_TARGET = "agent.remove_target"
    LIST_TARGET = "agent.list_target"
    SYNC_ACCOUNTS = "agent.sync_accounts"
    CANCEL = "agent.cancel"  # a control order: see ``CancelOrder`` and ``control_queue``


class HsmTask:
    """Names of the data tasks workflows chain (served by agents on their data queues).

    Signature, as the product's plugins: ``task(paths, jobid, **options)`` where ``paths`` is a
    list of ``PathItem`` and the return value a list of ``PathOutcome`` (one per input path, in
    order). One bad path never fails the batch; a task raises only for a fault that makes the
    whole batch meaningless (unknown target, unreadable configuration), which the hub records
    as the task's Failure.

    Options a task's function does not accept (workflow-only fields such as ``lock_level``) are
    dropped by the agent and logged, never a failure. Reports go to ``HubTask.JOB_TASK_RESULT``:
    ``STARTED``, ``PROGRESS`` (``TaskProgress``, at most every 30 s of a long batch), then
    ``SUCCESS`` (``DataTaskResults``) or ``FAILURE`` (``error``), each with ``node``.

    ``RECURSIVE_NAVIGATE`` is discovery: ``recursive_navigate(paths, jobid, max_entries=1000,
    marker="", skip_missing=False)``. Each item's outcome lists one page of the directory's
    direct children (``entries``, ``directories``, ``next_marker``), or the item itself when it
    is not a directory; see ``PathOutcome``.
    """

    MIGRATE = "agent.migrate"
    RECALL = "agent.recall"
    REVERSE_STUB = "agent.reverse_stub"
    DELETE = "agent.delete"
    MOVE = "agent.move"
    STAT = "agent.stat"
    LIST = "agent.list"
    RECURSIVE_NAVIGATE = "agent.recursive_navigate"


class HubTask:
    """Names of the tasks the hub worker serves (reports from agents)."""

    HEARTBEAT = "hub.sites.heartbeat"
    INVENTORY = "hub.sites.inventory"
    TASK_RESULT = "hub.sites.task_result"  # orders (AgentTask)
    JOB_TASK_RESULT = "hub.workflows.task_result"  # data tasks (HsmTask)


def broker_queue(site: str, queue: str = DEFAULT_QUEUE) -> str:
    """The broker queue an agent of ``site`` consumes for its ``queue``."""
    return site if queue == DEFAULT_QUEUE else f"{site}.{queue}"


def control_queue(site: str, node: str) -> str:
    """The broker queue of one agent node's control worker: ``<site>.control.<node>``.

    Control orders (``AgentTask.CANCEL``) go there rather than to a site queue because a site
    queue's messages wait for a free slot, and a cancel must reach a node whose every data slot
    is busy with the very tasks it cancels. Each node consumes its own (one worker, concurrency
    1), so the hub publishes a cancel once per node of the site (the node names of its
    heartbeats). The name cannot collide with a function queue (``<site>.<queue>``): queue names
    have no dots.
    """
    return f"{site}.control.{node}"


# --- agent -> hub reports ----------------------------------------------------------------------

class Heartbeat(TypedDict):
    """Sent every few seconds by each agent node. ``sent_at`` is ISO 8601 with a time zone."""

    site: str
    node: str
    queues: list[str]  # queue names as the hub knows them: "default", "discovery", ...
    sent_at: str
    info: NotRequired[dict[str, Any]]  # version, pid, concurrency per queue...


class FilesystemReport(TypedDict):
    name: str
    mountpoint: str
    fstype: NotRequired[str]
    capacity: NotRequired[int]
    used_space: NotRequired[int]
    free_space: NotRequired[int]


class PoolReport(TypedDict):
    filesystem: str
    name: str
    capacity: int
    used_space: int
    free_space: int
    is_default: NotRequired[bool]


class FilesetReport(TypedDict):
    filesystem: str
    name: str
    path: NotRequired[str]
    status: NotRequired[str]
    block_quota: NotRequired[int]
    block_usage: NotRequired[int]
    files_quota: NotRequired[int]
    files_usage: NotRequired[int]


class ServerReport(TypedDict):
    name: str
    list_of_interfaces: NotRequired[list[dict[str, Any]]]


class SiteCounts(TypedDict, total=False):
    files_count: int
    directories_count: int
    files_hydrated_count: int
    files_stubbed_count: int


class SpaceUsage(TypedDict):
    mountpoint: str
    used_space: int
    used_files: NotRequired[int]


class InventoryReport(TypedDict):
    """The agent's picture of its site. Filesystems, pools and filesets are cluster-wide: each
    list replaces the hub's list for the site. ``servers`` is merged per node unless
    ``servers_scope`` is ``"cluster"`` (the list is then the whole cluster's)."""

    site: str
    node: str
    filesystems: list[FilesystemReport]
    pools: list[PoolReport]
    filesets: list[FilesetReport]
    servers: list[ServerReport]
    counts: NotRequired[SiteCounts]
    spaces: NotRequired[list[SpaceUsage]]
    task_id: NotRequired[str]  # set when the report answers a refresh order
    servers_scope: NotRequired[Literal["node", "cluster"]]


TaskState = Literal["STARTED", "PROGRESS", "SUCCESS", "FAILURE"]


class TaskResult(TypedDict):
    """The outcome of an order or a data task. ``results`` is the task-specific answer (see each
    order; ``DataTaskResults`` for a data task's SUCCESS, ``TaskProgress`` for its PROGRESS).
    ``PROGRESS`` is sent by data tasks only; ``node`` is set on every data task report."""

    task_id: str
    state: TaskState
    results: NotRequired[Any]
    error: NotRequired[str]
    at: NotRequired[str]
    node: NotRequired[str]  # the reporting agent's node name (data tasks)


class TaskProgress(TypedDict):
    """``TaskResult.results`` of a ``PROGRESS`` report: where a running batch stands. Bytes count
    whole finished paths plus what running transfers moved so far."""

    paths_done: int
    paths_total: int
    bytes_done: int
    bytes_total: int


class DataTaskResults(TypedDict):
    """``TaskResult.results`` of a data task's ``SUCCESS``: one outcome per input path, in order.

    ``summary`` counts outcomes per status. ``cancelled`` is True when a cancel flag for the task
    (or its job) was seen: its ``aborted`` paths were not attempted because of it.
    """

    jobid: Any
    outcomes: list[PathOutcome]
    summary: dict[str, int]
    cancelled: bool


# --- data tasks: paths in, one outcome per path out -------------------------------------------

class PathItem(TypedDict):
    """One path of a batch, as discovery or the previous step handed it on."""

    path: str
    size: NotRequired[int]
    state: NotRequired[str]
    message: NotRequired[str]
    key: NotRequired[str]  # reverse_stub: the object to stub from (a previous step's PathOutcome.key)
    destination: NotRequired[str]  # move: where this path goes (else the task's ``destination``)


PathStatus = Literal["processed", "failed", "aborted", "skipped"]


class FileDetails(TypedDict):
    """One file, directory or link as the file browser shows it (``agent.stat`` / ``agent.list``).

    Times are integer nanoseconds since the epoch. ``allocated`` is the bytes of data blocks on
    disk (a stub's is near 0 while ``size`` stays the original size). ``state`` is the HSM state
    (``unmanaged``, ``premigrated``, ``migrated``, ``hydrated``); ``stale`` means a resident
    file changed since its remote copy was made.
    """

    name: str
    path: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int
    allocated: int
    mode: int  # permission bits
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    ctime_ns: int
    inode: int
    nlink: int
    state: str
    stale: bool
    target: NotRequired[str]  # the endpoint holding the remote copy, when there is one
    key: NotRequired[str]
    link: NotRequired[str]  # a symlink's target, as written
    error: NotRequired[str]  # the HSM record could not be read


class DiscoveredEntry(TypedDict):
    """One path found by discovery (``agent.recursive_navigate``), small enough to send by the
    thousand. ``size`` is a regular file's size (a stub's original size), 0 for anything else;
    ``state`` the HSM state (``unmanaged``, ``premigrated``, ``migrated``, ``hydrated``);
    ``mtime_ns`` integer nanoseconds since the epoch. Symlinks are listed, never followed."""

    path: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int
    state: str
    mtime_ns: int


class PathOutcome(TypedDict):
    """What a data task did with one path. ``message`` says why for anything but processed."""

    path: str
    status: PathStatus
    message: NotRequired[str]
    key: NotRequired[str]  # the object key the path's content lives under, when there is one
    size: NotRequired[int]
    destination: NotRequired[str]  # move: where the path now is
    entry: NotRequired[FileDetails]  # stat
    # list: one page of the directory, by name (FileDetails). recursive_navigate: one page of a
    # directory's direct children, by name, directories included (DiscoveredEntry), or the item
    # itself when it is not a directory.
    entries: NotRequired[list[FileDetails] | list[DiscoveredEntry]]
    directories: NotRequired[list[str]]  # recursive_navigate: this page's subdirectories (not symlinks)
    next_marker: NotRequired[str]  # list, recursive_navigate: pass back as ``marker`` for the next page


# --- hub -> agent orders -------------------------------------------------------------------------

class SettingsOrder(TypedDict):
    """``agent.apply_settings``: the complete key/value settings for the site (global + site)."""

    site: str
    settings: dict[str, Any]


class SpaceOrder(TypedDict):
    """``agent.create_space``: make ``mountpoint`` exist (a GPFS fileset on GPFS sites), with
    quota ``size`` bytes (None: unlimited) in ``pool`` (None: the filesystem default)."""

    space: str
    mountpoint: str
    size: int | None
    pool: str | None
    permission_mode: str


class SharesOrder(TypedDict):
    """``agent.apply_shares``: everything ``space`` publishes on one site (built by ``sites.services.shares``)."""

    space: str
    space_uuid: str
    mountpoint: str
    nfs: list[dict[str, Any]]
    smb: list[dict[str, Any]]


class TargetOrder(TypedDict):
    """``agent.configure_target`` / ``agent.remove_target``: the target and its bucket.

    ``bucket`` never holds credentials. ``credentials`` (configure only) is a Fernet token made
    with the site's agent key (``Site.agent_key``, installed with the agent) over the JSON of the
    bucket's secret fields, so the broker, its logs and the ``SettingsTask.request`` shown in
    the API never carry them in clear. ``credentials_ref`` names the bucket for the agent's
    local record.
    """

    endpoint_name: str
    target: dict[str, Any]
    bucket: dict[str, Any]
    credentials_ref: dict[str, Any]
    credentials: NotRequired[str]


class CancelOrder(TypedDict):
    """``agent.cancel`` (sent to ``control_queue(site, node)`` of every node of the site): stop the
    data tasks of these ids between files. An id is a task id or a job id (the ``jobid`` the
    data tasks carry). The flags live in the node's state directory, so a task that has not
    started yet reports all its paths ``aborted`` ("not attempted: cancelled") as soon as it is
    delivered, touching no file. Not answered: the cancelled tasks' own reports say what
    stopped."""

    task_ids: list[str]


class ListTargetOrder(TypedDict):
    """``agent.list_target``: one page of the remote listing of a target.

    The answer (``TaskResult.results``) is ``{"path", "marker", "next_marker", "files":
    [{"name", "path", "size", "type"}], "directories": [...], "summary": {...}}``.
    """

    endpoint_name: str
    path: str
    max_items: int
    marker: str
