"""Planning a job, in plain Python: which rule each entry follows, how entries are batched, which
tasks are ready and which can never run, and what state a job ends in.

Nothing here touches the database or Django (not even ``workflows.states``, which imports
``django.db.models``), so the engine can call it inside a transaction and the unit tests run it
without settings. The engine turns rows into the small values below (``Entry``, ``NodeView``),
asks a question, and writes the answer back with conditional updates.

State names are plain strings equal to the ``TextChoices`` values of ``workflows.states``;
``tests/unit/test_workflow_states.py`` keeps the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from functools import lru_cache
from typing import Any

# --- state names (equal to workflows.states' TextChoices values) ---------------------------------

JOB_PENDING = "PENDING"
JOB_STARTED = "STARTED"
JOB_FAILING = "FAILING"
JOB_PAUSING = "PAUSING"
JOB_PAUSED = "PAUSED"
JOB_CANCELLING = "CANCELLING"
JOB_DEQUEUING = "DEQUEUING"
JOB_CANCELLED = "CANCELLED"
JOB_SUCCESS = "SUCCESS"
JOB_HAS_FAILURES = "HAS_FAILURES"
JOB_FAILURE = "FAILURE"
JOB_SKIPPED = "SKIPPED"

TASK_PENDING = "PENDING"
TASK_STARTED = "STARTED"
TASK_SUCCESS = "SUCCESS"
TASK_ERROR = "ERROR"
TASK_FAILURE = "FAILURE"
TASK_SKIPPED = "SKIPPED"
TASK_CANCELLED = "CANCELLED"

PATH_PENDING = "pending"
PATH_PROCESSED = "processed"
PATH_FAILED = "failed"
PATH_ABORTED = "aborted"
PATH_SKIPPED = "skipped"

# A finished parent whose processed paths go on to its children (the product's Error vs Failure).
TASK_CONTINUES = frozenset({TASK_SUCCESS, TASK_ERROR})
# A parent in one of these states means its children can never run.
TASK_STOPS_CHAIN = frozenset({TASK_FAILURE, TASK_SKIPPED, TASK_CANCELLED})

# --- rule vocabulary -----------------------------------------------------------------------------

ANY = "all"
DEFAULT_STATE = "default"
RULE_TYPES = frozenset({ANY, "file", "directory", "symlink"})
RULE_STATES = frozenset({ANY, DEFAULT_STATE, "created", "updated", "moved", "deleted"})
ENTRY_TYPES = frozenset({"file", "directory", "symlink", "other"})
# Step kwargs that choose where a step runs; the hub consumes them, the agent never sees them.
ROUTING_KWARGS = ("site", "queue")

_FIELD_REFERENCE = re.compile(r"^\{([^{}\s]+)\}$")


class MissingField(KeyError):
    """A step kwarg refers to ``{name}`` but the launch gave no value for field ``name``."""

    def __init__(self, name: str, *, rule: int, step: str) -> None:
        super().__init__(name)
        self.field = name
        self.rule = rule
        self.step = step

    def __str__(self) -> str:
        return f"rule {self.rule}, step '{self.step}' refers to field '{self.field}', which has no value"


# --- values the engine hands in ------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One discovered (or given) path. ``extra`` is carried into the agent's ``PathItem``
    unchanged (a previous step's ``key``, a move's ``destination``)."""

    path: str
    type: str = "file"
    state: str | None = None  # snapdiff's created/updated/moved/deleted; None from recursive walks
    size: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | str) -> Entry:
        """An entry from a launch request's path (a string, or ``{"path", "type"?, "size"?,
        "state"?, ...}``); keys it does not know go to ``extra``."""
        if isinstance(item, str):
            return cls(path=item)
        rest = {k: v for k, v in item.items() if k not in {"path", "type", "state", "size"}}
        return cls(path=item["path"], type=item.get("type") or "file", state=item.get("state"),
                   size=item.get("size"), extra=rest)

    def item(self) -> dict[str, Any]:
        """The agent's ``PathItem`` for this entry (``agent.contract.PathItem``)."""
        out: dict[str, Any] = {"path": self.path}
        if self.size is not None:
            out["size"] = self.size
        if self.state is not None:
            out["state"] = self.state
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Step:
    """One action of a rule's chain, its ``{field}`` references resolved."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)  # without site/queue
    site: str | None = None  # None: the job's site
    queue: str | None = None  # None: the job's queue on the job's site, else that site's default


@dataclass(frozen=True)
class Rule:
    """A compiled filter rule; ``index`` is its position in the definition's ``filter_rules``."""

    index: int
    type: str
    state: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    steps: tuple[Step, ...]


# --- compiling a definition ----------------------------------------------------------------------

def field_reference(value: Any) -> str | None:
    """The field name when ``value`` is exactly ``"{name}"``, else None.

    Only whole-string references are substituted (``"{a}/x"`` stays as written), so a literal
    value can never change meaning because a field of that name is added later.
    """
    if isinstance(value, str):
        match = _FIELD_REFERENCE.match(value)
        if match:
            return match.group(1)
    return None


def referenced_fields(filter_rules: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every field name the rules' step kwargs refer to (for validating a definition)."""
    names: set[str] = set()
    for rule in filter_rules:
        for action in rule.get("action") or ():
            for key, value in action.items():
                name = field_reference(value) if key != "name" else None
                if name is not None:
                    names.add(name)
    return names


def _routing_value(value: Any) -> str | None:
    # An empty field ("destinationqueue": "") means "the default", not a queue named "".
    if value is None or value == "":
        return None
    return str(value)


def compile_rules(filter_rules: Sequence[Mapping[str, Any]], fields: Mapping[str, Any]) -> list[Rule]:
    """The definition's rules with ``"{field}"`` kwargs replaced by the launch's field values.

    ``fields`` holds the values (defaults already applied by the caller). A reference to a field
    without a value raises ``MissingField`` (a ``KeyError`` naming it). The reserved kwargs
    ``site`` and ``queue`` become ``Step.site``/``Step.queue``. ``type`` and ``state`` default
    to ``"all"``; an unknown one raises ``ValueError`` (it could never match anything).
    """
    rules: list[Rule] = []
    for index, raw in enumerate(filter_rules):
        rule_type = raw.get("type") or ANY
        rule_state = raw.get("state") or ANY
        if rule_type not in RULE_TYPES:
            raise ValueError(f"rule {index}: unknown type '{rule_type}'")
        if rule_state not in RULE_STATES:
            raise ValueError(f"rule {index}: unknown state '{rule_state}'")
        steps: list[Step] = []
        for action in raw.get("action") or ():
            name = action["name"]
            kwargs: dict[str, Any] = {}
            for key, value in action.items():
                if key == "name":
                    continue
                ref = field_reference(value)
                if ref is not None:
                    if ref not in fields:
                        raise MissingField(ref, rule=index, step=name)
                    value = fields[ref]
                kwargs[key] = value
            site = _routing_value(kwargs.pop("site", None))
            queue = _routing_value(kwargs.pop("queue", None))
            steps.append(Step(name=name, kwargs=kwargs, site=site, queue=queue))
        rules.append(Rule(index=index, type=rule_type, state=rule_state,
                          include=tuple(raw.get("include") or ()), exclude=tuple(raw.get("exclude") or ()),
                          steps=tuple(steps)))
    return rules


# --- routing -------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _glob(pattern: str) -> tuple[re.Pattern[str], bool]:
    """The compiled pattern and whether it applies to the whole path (it contains a "/")."""
    return re.compile(translate(pattern)), "/" in pattern


def _basename(path: str) -> str:
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else path


def first_match(path: str, patterns: Iterable[str]) -> str | None:
    """The first of ``patterns`` that matches ``path``, or None.

    A pattern with a "/" matches the whole path, any other the last component, both
    case-sensitively (``fnmatchcase``), so ``*.tmp`` means a temporary file anywhere and
    ``/data/scratch/*`` everything below that folder.
    """
    name = _basename(path)
    for pattern in patterns:
        regex, whole = _glob(pattern)
        if regex.match(path if whole else name):
            return pattern
    return None


@dataclass
class Routing:
    """Where each entry went: rule index -> entries (input order), and what matched no rule."""

    by_rule: dict[int, list[Entry]] = field(default_factory=dict)
    unmatched: list[tuple[Entry, str]] = field(default_factory=list)


def _filter_reason(path: str, include: Sequence[str], exclude: Sequence[str], scope: str) -> str | None:
    pattern = first_match(path, exclude)
    if pattern is not None:
        return f"excluded by {scope} exclude '{pattern}'"
    if include and first_match(path, include) is None:
        return f"matches no {scope} include"
    return None


def _admits(rule: Rule, entry: Entry) -> bool:
    if rule.type != ANY and rule.type != entry.type:
        return False
    if rule.exclude and first_match(entry.path, rule.exclude) is not None:
        return False
    return not rule.include or first_match(entry.path, rule.include) is not None


def route(entries: Iterable[Entry], rules: Sequence[Rule], *, include: Sequence[str] = (),
          exclude: Sequence[str] = (), site_include: Sequence[str] = (),
          site_exclude: Sequence[str] = ()) -> Routing:
    """Route each entry to the first rule that takes it.

    The site's include/exclude are applied first, then the job's (the caller passes ``()`` for
    those a launch ignores); an excluded entry, or one that no pattern of a non-empty include
    matches, is unmatched with the reason. Then rules are tried in order, those with state
    ``"default"`` after all the others: a rule takes an entry when its type is ``"all"`` or the
    entry's, its state is ``"all"`` or the entry's, and its own globs admit the path.
    """
    ordered = [r for r in rules if r.state != DEFAULT_STATE] + [r for r in rules if r.state == DEFAULT_STATE]
    routing = Routing()
    found: dict[int, list[Entry]] = {}
    for entry in entries:
        reason = (_filter_reason(entry.path, site_include, site_exclude, "site")
                  or _filter_reason(entry.path, include, exclude, "job"))
        if reason is not None:
            routing.unmatched.append((entry, reason))
            continue
        for rule in ordered:
            if rule.state not in (ANY, DEFAULT_STATE) and rule.state != entry.state:
                continue
            if _admits(rule, entry):
                found.setdefault(rule.index, []).append(entry)
                break
        else:
            routing.unmatched.append((entry, "no rule matched"))
    routing.by_rule = {index: found[index] for index in sorted(found)}
    return routing


# --- batching ------------------------------------------------------------------------------------

def batches(entries: Iterable[Entry], *, max_files: int, max_bytes: int | None) -> list[list[Entry]]:
    """Consecutive entries grouped into batches of at most ``max_files`` entries and
    ``max_bytes`` bytes (None or 0: no byte limit).

    Order is kept and no batch is empty. An entry larger than ``max_bytes`` goes alone (it cannot
    be split, and holding it back would stall the job); an unknown size counts as 0.
    """
    if max_files < 1:
        raise ValueError(f"max_files must be at least 1, not {max_files}")
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must not be negative, not {max_bytes}")
    out: list[list[Entry]] = []
    current: list[Entry] = []
    current_bytes = 0
    for entry in entries:
        size = entry.size or 0
        if current and (len(current) >= max_files or (max_bytes and current_bytes + size > max_bytes)):
            out.append(current)
            current, current_bytes = [], 0
        current.append(entry)
        current_bytes += size
    if current:
        out.append(current)
    return out


def auto_batch_files(samples: Sequence[tuple[int, int, float]], *, target_seconds: float, minimum: int,
                     maximum: int) -> int:
    """Files per batch so that a batch takes about ``target_seconds``, from finished batches'
    ``(files, bytes, seconds)``.

    The rate is total files over total seconds (a long batch weighs more than a short one, as
    it should). Without measurements the answer is ``minimum`` (start small, learn fast); with
    files but no measurable time it is ``maximum``. The answer is always within the bounds.
    """
    if minimum < 1 or maximum < minimum:
        raise ValueError(f"need 1 <= minimum <= maximum, not {minimum} and {maximum}")
    if target_seconds <= 0:
        raise ValueError(f"target_seconds must be positive, not {target_seconds}")
    files = sum(max(0, s[0]) for s in samples)
    seconds = sum(max(0.0, s[2]) for s in samples)
    if files == 0:
        return minimum
    if seconds <= 0:
        return maximum
    wanted = round(files / seconds * target_seconds)
    return max(minimum, min(maximum, wanted))


# --- the ready set -------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeView:
    """What ``settle`` needs of a task: its state, its static parents, and whether it was sent."""

    id: int
    state: str
    parents: tuple[int, ...] = ()
    dispatched: bool = False


def settle(nodes: Iterable[NodeView], *, has_input: Mapping[int, bool]) -> tuple[list[int], list[int]]:
    """``(ready, to_skip)`` for the given tasks, each list in input order.

    ready: PENDING, not dispatched, every parent finished in SUCCESS or ERROR, and
    ``has_input[id]`` true. to_skip: PENDING and not dispatched, with a parent in FAILURE,
    SKIPPED or CANCELLED, or with every parent continued but no input (nothing was processed
    upstream). Skips are followed to a fixed point - a skipped task skips its children - so the
    engine applies the whole closure in one update rather than one generation per pass.

    A dispatched task is never skipped: it is on an agent's queue and its own report decides.
    A parent missing from ``nodes`` counts as still running. ``has_input`` must hold every task
    whose parents all continued (a missing one raises ``KeyError``: guessing would either stall
    the job or skip work).
    """
    views = list(nodes)
    by_id = {n.id: n for n in views}
    children: dict[int, list[int]] = {}
    for n in views:
        for parent in n.parents:
            children.setdefault(parent, []).append(n.id)
    skipped: set[int] = set()

    def state_of(node_id: int) -> str | None:
        if node_id in skipped:
            return TASK_SKIPPED
        node = by_id.get(node_id)
        return node.state if node is not None else None

    def verdict(node: NodeView) -> str | None:
        """'ready', 'skip' or None (waits)."""
        if node.state != TASK_PENDING or node.dispatched or node.id in skipped:
            return None
        parent_states = [state_of(p) for p in node.parents]
        if any(s in TASK_STOPS_CHAIN for s in parent_states):
            return "skip"
        if all(s in TASK_CONTINUES for s in parent_states):
            return "ready" if has_input[node.id] else "skip"
        return None

    ready: set[int] = set()
    work = list(views)
    while work:
        node = work.pop()
        outcome = verdict(node)
        if outcome == "ready":
            ready.add(node.id)
        elif outcome == "skip":
            skipped.add(node.id)
            ready.discard(node.id)
            work.extend(by_id[c] for c in children.get(node.id, ()) if c in by_id)
    return [n.id for n in views if n.id in ready], [n.id for n in views if n.id in skipped]


# --- chains and results --------------------------------------------------------------------------

def next_items(given: Sequence[Mapping[str, Any]], outcomes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``PathItem`` list for the next step of a chain: the processed outcomes, in order.

    Each item has ``path``, ``size`` (the outcome's, else the given item's) and ``key`` when the
    outcome has one (reverse_stub stubs from the object the previous step wrote). Failed,
    aborted and skipped paths stop here: that is the product's Error semantics.
    """
    given_by_path: dict[str, Mapping[str, Any]] = {}
    for item in given:
        given_by_path.setdefault(item["path"], item)
    out: list[dict[str, Any]] = []
    for outcome in outcomes:
        if outcome.get("status") != PATH_PROCESSED:
            continue
        item: dict[str, Any] = {"path": outcome["path"]}
        size = outcome.get("size")
        if size is None:
            size = given_by_path.get(outcome["path"], {}).get("size")
        if size is not None:
            item["size"] = size
        if outcome.get("key") is not None:
            item["key"] = outcome["key"]
        out.append(item)
    return out


def job_final_state(*, cancelled: bool, processed: int, failed: int, aborted: int, skipped: int,
                    task_failures: int) -> str:
    """The state a job ends in once nothing of it runs any more.

    Aborted and skipped paths are not failures (``abort_missing`` exists so that files gone
    since discovery do not fail a job); a job that processed nothing and failed nothing did
    nothing, which the product calls Skipped.
    """
    del aborted, skipped  # part of the picture the caller has; they do not change the verdict
    if cancelled:
        return JOB_CANCELLED
    if failed or task_failures:
        return JOB_HAS_FAILURES if processed else JOB_FAILURE
    if processed == 0:
        return JOB_SKIPPED
    return JOB_SUCCESS


def job_running_state(*, failures: bool) -> str:
    """A running job's state: Failing once anything failed, else Started."""
    return JOB_FAILING if failures else JOB_STARTED
