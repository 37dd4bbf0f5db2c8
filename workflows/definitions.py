"""Workflow definitions: the task table, the rules a definition obeys, the values a launch gives
its fields, and the five built-in workflows.

A definition (``Workflow.fields``, ``filter_rules``, ``discovery``, ``discovery_options``,
``preferred_queue``; the format is in ``Workflow``'s docstring) is checked once, when it is
written (``validate_definition``), so a launch can trust it; a launch's field values are checked
against it (``resolve_field_values``) before any row is created. Both raise DRF's
``ValidationError`` keyed by the definition's key, each message saying where the problem is in
0-based positions (``"rule 1, step 0: unknown task 'migrat' (known: ...)"``), and collect every
problem rather than stopping at the first, so an author fixes a definition in one round.

Nothing here touches the database except ``resolve_field_values`` for ``site`` fields and
``ensure_builtin_workflows``, so the definition checks run in unit tests without one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rest_framework.exceptions import ValidationError

from agent.contract import HsmTask
from sites.validators import CONTROL_CHARACTERS, absolute_path_problem
from workflows.dag import RULE_STATES, RULE_TYPES, field_reference

# --- the tasks a rule may chain ------------------------------------------------------------------

BOOL, INT, STRING, PATH = "bool", "int", "string", "path"


@dataclass(frozen=True)
class Option:
    """One keyword argument an agent task accepts: its kind (``bool``, ``int`` >= 0, ``string``
    non-empty, ``path`` absolute) and whether ``null`` is a meaningful value (the agent's own
    default, e.g. recall's ``target``: the endpoint each file's record names)."""

    kind: str
    nullable: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """A task a workflow may name, as the hub sends it to an agent.

    ``wire`` is the agent's Celery task name (``agent.contract.HsmTask``). ``options`` are the
    keyword arguments its function accepts (``agent/actions.py``). ``needs_target``: the hub
    chooses the external target per path (the space's targets, matched by their regexes) and
    passes it as ``target``, so a rule may not set ``target`` itself. ``discovery`` tasks find
    entries (chosen by a workflow's ``discovery``) and never appear in a rule's chain.
    """

    wire: str
    options: Mapping[str, Option] = field(default_factory=dict)
    needs_target: bool = False
    discovery: bool = False


TASKS: dict[str, TaskSpec] = {
    "migrate": TaskSpec(HsmTask.MIGRATE, {
        "target": Option(STRING), "premigrate": Option(BOOL), "overwrite": Option(BOOL),
        "abort_missing": Option(BOOL), "skip_modified_during_migrate": Option(BOOL), "stub_size": Option(INT),
        "verify_content": Option(BOOL),
    }, needs_target=True),
    "recall": TaskSpec(HsmTask.RECALL, {
        "verify": Option(BOOL), "delete_remote": Option(BOOL), "default_uid": Option(INT, nullable=True),
        "default_gid": Option(INT, nullable=True), "restore_times": Option(BOOL),
        "target": Option(STRING, nullable=True), "abort_missing": Option(BOOL),
    }),
    "reverse_stub": TaskSpec(HsmTask.REVERSE_STUB, {
        "target": Option(STRING), "hydrate": Option(BOOL), "verify": Option(BOOL),
        "default_uid": Option(INT, nullable=True), "default_gid": Option(INT, nullable=True),
    }, needs_target=True),
    "delete": TaskSpec(HsmTask.DELETE, {
        "target": Option(STRING, nullable=True), "abort_missing": Option(BOOL),
    }),
    "move": TaskSpec(HsmTask.MOVE, {
        "destination": Option(PATH, nullable=True), "source_root": Option(PATH, nullable=True),
        "overwrite": Option(BOOL),
    }),
    # Discovery. ``max_entries`` is the page size of one directory listing; the hub sets ``marker``.
    "recursive_navigate": TaskSpec(getattr(HsmTask, "RECURSIVE_NAVIGATE", "agent.recursive_navigate"), {
        "skip_missing": Option(BOOL), "max_entries": Option(INT),
    }, discovery=True),
    "snapdiff": TaskSpec(getattr(HsmTask, "SNAPDIFF", "agent.snapdiff"), {
        "skip_old_ctimes": Option(BOOL), "condense_moves": Option(BOOL),
    }, discovery=True),
}
DATA_TASKS = tuple(sorted(name for name, spec in TASKS.items() if not spec.discovery))

# A workflow's ``discovery`` and the task that performs it (None: only the given paths).
DISCOVERY_TASKS: dict[str, str] = {"recursive": "recursive_navigate", "snapdiff": "snapdiff"}
# ``discovery_options``: every discovery task's options (an option of the other kind of
# discovery is kept and ignored, so switching ``discovery`` does not invalidate a definition).
DISCOVERY_OPTIONS: dict[str, Option] = {
    name: option for task in DISCOVERY_TASKS.values() for name, option in TASKS[task].options.items()
}
# Product options forwarded to the agent although no agent function accepts them yet; an agent
# ignores keyword arguments its function does not take. ``lock_level`` is the GPFS lock taken
# while a file migrates or recalls (partial / implicit / none), a field of the built-ins.
PASSTHROUGH = frozenset({"lock_level"})
# What the agent receives positionally or from the hub itself; a rule never sets them.
STEP_FORBIDDEN = frozenset({"paths", "jobid"})

# --- the definition format -----------------------------------------------------------------------

DEFINITION_KEYS = ("discovery", "discovery_options", "preferred_queue", "fields", "filter_rules")
FIELD_TYPES = ("string", "bool", "int", "choice", "site", "queue", "path")
FIELD_KEYS = frozenset({"name", "type", "label", "default", "options", "required"})
RULE_KEYS = frozenset({"type", "state", "include", "exclude", "action"})
# The broker queue names a site's agents consume (``sites.models.NAME_VALIDATOR``).
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")
FIELD_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME_LENGTH = 100
MAX_LABEL_LENGTH = 100
MAX_STRING_LENGTH = 4096
# Bounds that keep a definition readable and its routing cheap (every entry meets every rule).
MAX_FIELDS = 50
MAX_RULES = 100
MAX_STEPS = 20
MAX_CHOICES = 100
MAX_GLOBS = 500
MAX_GLOB_LENGTH = 1024

# Which field types can fill an option of each kind through a ``"{field}"`` reference.
_KINDS_OF_FIELD = {
    "string": {STRING}, "bool": {BOOL}, "int": {INT}, "site": {STRING}, "queue": {STRING}, "path": {STRING, PATH},
}
_ROUTING_FIELD_TYPES = {"site": ("site", "string", "choice"), "queue": ("queue", "string", "choice")}


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(values)


def _show(value: Any) -> str:
    """A value for a message, cut short (a definition may hold anything)."""
    return f"{value!r:.80}"


class _Problems:
    """Messages collected per definition key, raised together."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        self.by_key.setdefault(key, []).append(message)

    def raise_any(self) -> None:
        if self.by_key:
            raise ValidationError(self.by_key)


def _kind_problem(option: Option, value: Any) -> str | None:
    """Why ``value`` cannot be given literally for ``option`` (None: it can)."""
    if value is None:
        return None if option.nullable else "must not be null"
    if option.kind == BOOL:
        return None if isinstance(value, bool) else "must be true or false"
    if option.kind == INT:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return "must be a whole number >= 0"
        return None
    if option.kind == PATH:
        return _path_problem(value)
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if CONTROL_CHARACTERS.search(value):
        return "must not contain control characters"
    return None


def _path_problem(value: Any) -> str | None:
    message = absolute_path_problem(value)
    return None if message is None else f"must be an absolute path in normal form ({message.rstrip('.')})"


# --- fields --------------------------------------------------------------------------------------

def _field_default_problem(spec: Mapping[str, Any], value: Any) -> str | None:
    """Why ``value`` cannot be the default (or a launch value) of field ``spec`` (None: it can)."""
    kind = spec.get("type")
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if kind == "choice":
        options = spec.get("options") or []
        return None if _in_options(value, options) else f"must be one of: {_quoted([str(o) for o in options])}"
    if not isinstance(value, str):
        return "must be a string"
    if kind == "queue" and value == "":
        return None  # the destination site's default queue (as ``dag`` routes an empty queue)
    if kind in ("site", "queue"):
        if not NAME_PATTERN.match(value) or len(value) > MAX_NAME_LENGTH:
            return f"must be a {kind} name (letters, digits, '-' and '_')"
        return None
    if kind == "path":
        return _path_problem(value)
    if len(value) > MAX_STRING_LENGTH:
        return f"must have at most {MAX_STRING_LENGTH} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def _in_options(value: Any, options: Sequence[Any]) -> bool:
    # ``True == 1`` in Python; a choice of 1 is not chosen by ``true``.
    return any(type(value) is type(option) and value == option for option in options)


def _check_fields(raw: Any, problems: _Problems) -> dict[str, Mapping[str, Any]]:
    """Check ``fields``; the well-formed ones by name (so rules can be checked against them)."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        problems.add("fields", 'Expected a list of fields, e.g. [{"name": "hydrate", "type": "bool"}].')
        return {}
    if len(raw) > MAX_FIELDS:
        problems.add("fields", f"At most {MAX_FIELDS} fields.")
    known: dict[str, Mapping[str, Any]] = {}
    for index, spec in enumerate(raw):
        where = f"field {index}"
        if not isinstance(spec, dict):
            problems.add("fields", f"{where}: expected an object with 'name' and 'type'.")
            continue
        name = spec.get("name")
        if isinstance(name, str):
            where = f"field {index} ('{name:.60}')"
        unknown = sorted(str(key) for key in spec if key not in FIELD_KEYS)
        if unknown:
            problems.add("fields", f"{where}: unknown key(s) {_quoted(unknown)} "
                                   f"(known: {_quoted(sorted(FIELD_KEYS))}).")
        ok = True
        if not isinstance(name, str) or not FIELD_NAME_PATTERN.match(name) or len(name) > MAX_NAME_LENGTH:
            problems.add("fields", f"{where}: 'name' must be an identifier (letters, digits and '_', not starting "
                                   f"with a digit, at most {MAX_NAME_LENGTH} characters).")
            ok = False
        elif name in known:
            problems.add("fields", f"{where}: the name '{name}' is used by another field.")
            ok = False
        kind = spec.get("type")
        if kind not in FIELD_TYPES:
            problems.add("fields", f"{where}: unknown type {_show(kind)} (known: {_quoted(FIELD_TYPES)}).")
            ok = False
        label = spec.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_LENGTH):
            problems.add("fields", f"{where}: 'label' must be a string of at most {MAX_LABEL_LENGTH} characters.")
        if "required" in spec and not isinstance(spec["required"], bool):
            problems.add("fields", f"{where}: 'required' must be true or false.")
        if kind == "choice":
            ok = _check_choice_options(spec.get("options"), where, problems) and ok
        elif "options" in spec:
            problems.add("fields", f"{where}: 'options' is only for fields of type 'choice'.")
        if ok and spec.get("default") is not None:
            message = _field_default_problem(spec, spec["default"])
            if message:
                problems.add("fields", f"{where}: the default {_show(spec['default'])} {message}.")
        if ok:
            known[name] = spec
    return known


def _check_choice_options(options: Any, where: str, problems: _Problems) -> bool:
    if not isinstance(options, list) or not options:
        problems.add("fields", f"{where}: a 'choice' field needs 'options', a non-empty list of its values.")
        return False
    if len(options) > MAX_CHOICES:
        problems.add("fields", f"{where}: at most {MAX_CHOICES} options.")
        return False
    if any(isinstance(o, bool) or not isinstance(o, (str, int)) for o in options):
        problems.add("fields", f"{where}: each option must be a string or an integer.")
        return False
    if len({(type(o), o) for o in options}) != len(options):
        problems.add("fields", f"{where}: the options repeat a value.")
        return False
    return True


def _field_kinds(spec: Mapping[str, Any]) -> set[str]:
    if spec.get("type") == "choice":
        return {INT if isinstance(o, int) else STRING for o in spec.get("options") or []}
    return _KINDS_OF_FIELD.get(str(spec.get("type")), set())


# --- rules ---------------------------------------------------------------------------------------

def _check_globs(value: Any, where: str, key: str, problems: _Problems) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add("filter_rules", f'{where}: \'{key}\' must be a list of glob patterns, e.g. ["*.tmp"].')
        return []
    if len(value) > MAX_GLOBS:
        problems.add("filter_rules", f"{where}: at most {MAX_GLOBS} '{key}' patterns.")
    for position, pattern in enumerate(value):
        if not isinstance(pattern, str) or not pattern:
            problems.add("filter_rules", f"{where}: '{key}' pattern {position} must be a non-empty string, "
                                         f"not {_show(pattern)}.")
        elif len(pattern) > MAX_GLOB_LENGTH or CONTROL_CHARACTERS.search(pattern):
            problems.add("filter_rules", f"{where}: '{key}' pattern {position} must have at most "
                                         f"{MAX_GLOB_LENGTH} characters and no control characters.")
    return value


def _check_step(step: Any, where: str, fields: Mapping[str, Mapping[str, Any]], problems: _Problems) -> None:
    if not isinstance(step, dict):
        problems.add("filter_rules", f'{where}: expected an object such as {{"name": "migrate"}}.')
        return
    name = step.get("name")
    spec = TASKS.get(name) if isinstance(name, str) else None
    if spec is None:
        problem = "'name' (the task to run) is missing" if name is None else f"unknown task {_show(name)}"
        problems.add("filter_rules", f"{where}: {problem} (known: {_quoted(DATA_TASKS)}).")
        return
    if spec.discovery:
        problems.add("filter_rules", f"{where}: '{name}' is a discovery task; choose it with the workflow's "
                                     f"'discovery', not in a rule's action.")
        return
    for key, value in step.items():
        if key == "name":
            continue
        reference = field_reference(value)
        if reference is not None and reference not in fields:
            problems.add("filter_rules", f"{where} ('{name}'): '{key}' refers to field '{reference}', which the "
                                         f"workflow does not define.")
            continue
        if key in STEP_FORBIDDEN:
            problems.add("filter_rules", f"{where} ('{name}'): '{key}' is given by the hub and cannot be set.")
        elif key in _ROUTING_FIELD_TYPES:
            _check_routing(key, value, reference, fields, f"{where} ('{name}')", problems)
        elif key == "target" and spec.needs_target:
            problems.add("filter_rules", f"{where} ('{name}'): 'target' is chosen by the hub for each path (the "
                                         f"space's external target that matches it); remove it.")
        elif key in spec.options:
            _check_option(key, spec.options[key], value, reference, fields, f"{where} ('{name}')", problems)
        elif key in PASSTHROUGH or key in fields or reference is not None:
            continue  # forwarded; the agent ignores what its function does not take
        else:
            known = sorted({*spec.options, *PASSTHROUGH} - ({"target"} if spec.needs_target else set()))
            problems.add("filter_rules", f"{where} ('{name}'): unknown option '{key}' (known: {_quoted(known)}; "
                                         f"or the name of one of the workflow's fields).")


def _check_option(key: str, option: Option, value: Any, reference: str | None,
                  fields: Mapping[str, Mapping[str, Any]], where: str, problems: _Problems) -> None:
    if reference is not None:
        if not ({option.kind} & _field_kinds(fields[reference])):
            problems.add("filter_rules", f"{where}: '{key}' needs a {option.kind} value but field '{reference}' is "
                                         f"of type '{fields[reference].get('type')}'.")
        return
    message = _kind_problem(option, value)
    if message:
        problems.add("filter_rules", f"{where}: '{key}' {message} (got {_show(value)}).")


def _check_routing(key: str, value: Any, reference: str | None, fields: Mapping[str, Mapping[str, Any]],
                   where: str, problems: _Problems) -> None:
    if reference is not None:
        allowed = _ROUTING_FIELD_TYPES[key]
        if fields[reference].get("type") not in allowed:
            problems.add("filter_rules", f"{where}: '{key}' refers to field '{reference}' of type "
                                         f"'{fields[reference].get('type')}' (allowed: {_quoted(allowed)}).")
        return
    if value is None:
        return
    if not isinstance(value, str) or not NAME_PATTERN.match(value) or len(value) > MAX_NAME_LENGTH:
        problems.add("filter_rules", f"{where}: '{key}' must be a {key} name (letters, digits, '-' and '_') or a "
                                     f"\"{{field}}\" reference, not {_show(value)}.")


def _check_rules(raw: Any, fields: Mapping[str, Mapping[str, Any]], problems: _Problems) -> list[dict[str, Any]]:
    """Check ``filter_rules``; returns them with ``type``/``state`` defaulting to ``all`` and
    ``include``/``exclude`` to ``[]`` (what ``dag.compile_rules`` assumes), so a stored rule
    always shows every key."""
    if not isinstance(raw, list):
        problems.add("filter_rules", 'Expected a list of rules, e.g. [{"type": "file", "state": "all", '
                                     '"action": [{"name": "migrate"}]}].')
        return []
    if not raw:
        problems.add("filter_rules", "A workflow needs at least one rule (a rule with an 'action').")
    if len(raw) > MAX_RULES:
        problems.add("filter_rules", f"At most {MAX_RULES} rules.")
    cleaned: list[dict[str, Any]] = []
    for index, rule in enumerate(raw):
        where = f"rule {index}"
        if not isinstance(rule, dict):
            problems.add("filter_rules", f"{where}: expected an object with 'type', 'state' and 'action'.")
            continue
        unknown = sorted(str(key) for key in rule if key not in RULE_KEYS)
        if unknown:
            problems.add("filter_rules", f"{where}: unknown key(s) {_quoted(unknown)} "
                                         f"(known: {_quoted(sorted(RULE_KEYS))}).")
        rule_type = rule.get("type", "all")
        if rule_type not in RULE_TYPES:
            problems.add("filter_rules", f"{where}: unknown type {_show(rule_type)} "
                                         f"(known: {_quoted(sorted(RULE_TYPES))}).")
        state = rule.get("state", "all")
        if state not in RULE_STATES:
            problems.add("filter_rules", f"{where}: unknown state {_show(state)} "
                                         f"(known: {_quoted(sorted(RULE_STATES))}).")
        include = _check_globs(rule.get("include"), where, "include", problems)
        exclude = _check_globs(rule.get("exclude"), where, "exclude", problems)
        action = rule.get("action")
        if not isinstance(action, list) or not action:
            problems.add("filter_rules", f"{where}: 'action' must be a non-empty list of steps such as "
                                         f'[{{"name": "migrate"}}].')
            action = []
        elif len(action) > MAX_STEPS:
            problems.add("filter_rules", f"{where}: at most {MAX_STEPS} steps in an action.")
        for number, step in enumerate(action):
            _check_step(step, f"{where}, step {number}", fields, problems)
        cleaned.append({**rule, "type": rule_type, "state": state, "include": include, "exclude": exclude,
                        "action": action})
    return cleaned


# --- discovery and queue -------------------------------------------------------------------------

def _check_discovery(data: Mapping[str, Any], problems: _Problems) -> Any:
    discovery = data.get("discovery")
    if discovery == "":
        discovery = None  # a form's empty choice
    if discovery is not None and discovery not in DISCOVERY_TASKS:
        problems.add("discovery", f"Unknown discovery {_show(discovery)}: use "
                                  f"{_quoted(sorted(DISCOVERY_TASKS))}, or null for the given paths only.")
    return discovery


def _check_discovery_options(raw: Any, problems: _Problems) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add("discovery_options", 'Expected an object, e.g. {"skip_missing": false}.')
        return {}
    for key, value in raw.items():
        option = DISCOVERY_OPTIONS.get(key)
        if option is None:
            problems.add("discovery_options", f"Unknown option {_show(key)} "
                                              f"(known: {_quoted(sorted(DISCOVERY_OPTIONS))}).")
            continue
        message = _kind_problem(option, value)
        if message is None and option.kind == INT and value == 0:
            message = "must be a whole number >= 1"
        if message:
            problems.add("discovery_options", f"'{key}' {message} (got {_show(value)}).")
    return raw


def _check_preferred_queue(value: Any, problems: _Problems) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or (value and (not NAME_PATTERN.match(value) or len(value) > MAX_NAME_LENGTH)):
        problems.add("preferred_queue", "A queue name matches [a-zA-Z0-9-_]+ (or is empty for the site's default).")
        return ""
    return value


def validate_definition(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its definition keys (``DEFINITION_KEYS``) checked and normalised.

    Raises ``ValidationError`` keyed by definition key with every problem found: unknown task
    names (and discovery tasks in a chain), unknown rule keys, a bad rule type or state, glob
    lists that are not lists of non-empty strings, an empty or missing ``action``, hard-coded
    ``target`` for tasks whose endpoint the hub chooses, option values of the wrong kind,
    unknown options (allowed only for field names, ``"{field}"`` references and
    ``PASSTHROUGH``), references to undefined fields or to fields of an unfitting type; fields
    with duplicate or non-identifier names, unknown types or keys, choices without options or
    with a default outside them, defaults of the wrong type; an unknown ``discovery``, unknown or
    ill-typed ``discovery_options``, and a ``preferred_queue`` that is not a queue name.

    Keys absent from ``data`` are checked as absent (no fields, no rules), so pass the whole
    definition (a PATCH merges the stored one with the request first). Other keys pass through.
    """
    problems = _Problems()
    result = dict(data)
    fields = _check_fields(data.get("fields"), problems)
    rules = _check_rules(data.get("filter_rules"), fields, problems)
    discovery = _check_discovery(data, problems)
    options = _check_discovery_options(data.get("discovery_options"), problems)
    queue = _check_preferred_queue(data.get("preferred_queue"), problems)
    problems.raise_any()
    result.update(fields=list(data.get("fields") or []), filter_rules=rules, discovery=discovery,
                  discovery_options=options, preferred_queue=queue)
    return result


# --- launch values -------------------------------------------------------------------------------

def is_required(spec: Mapping[str, Any]) -> bool:
    """Whether a launch must give the field: ``required`` when set, else when it has no default."""
    if "required" in spec:
        return bool(spec["required"])
    return spec.get("default") is None


def resolve_field_values(fields_def: Sequence[Mapping[str, Any]], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The value of every field of a (validated) definition for one launch.

    A given value is type-checked (``bool``, ``int``, ``string``, ``choice`` within its options,
    ``site`` the name of an existing site, ``queue`` a queue name or ``""`` for the site's
    default, ``path`` an absolute path in normal form); a field not given (or given ``null``)
    takes its default, and one without a default is refused when required (``is_required``),
    else ``None``. Names the definition does not have are refused. Raises
    ``ValidationError({"fields": {name: [message]}})``. Whether the caller may use a named site
    is the launch's question, not this one's.
    """
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ValidationError({"fields": ['Expected an object of field values, e.g. {"hydrate": true}.']})
    by_name = {spec["name"]: spec for spec in fields_def}
    problems: dict[str, list[str]] = {}
    for name in given:
        if name not in by_name:
            known = _quoted(sorted(by_name)) or "none"
            problems[str(name)] = [f"The workflow has no field '{name}' (its fields: {known})."]
    values: dict[str, Any] = {}
    for name, spec in by_name.items():
        if name in given and given[name] is not None:
            value = given[name]
            message = _field_default_problem(spec, value)
            if message:
                problems[name] = [f"{_show(value)} {message}."]
                continue
            values[name] = value
        elif spec.get("default") is not None:
            values[name] = spec["default"]
        elif is_required(spec):
            problems[name] = ["This field is required."]
        else:
            values[name] = None
    sites = {values[name] for name, spec in by_name.items() if spec.get("type") == "site" and values.get(name)}
    if sites:
        from sites.models import Site

        existing = set(Site.objects.filter(name__in=sites).values_list("name", flat=True))
        for name, spec in by_name.items():
            if spec.get("type") == "site" and values.get(name) and values[name] not in existing:
                problems[name] = [f"There is no site named '{values[name]}'."]
    if problems:
        raise ValidationError({"fields": problems})
    return values


# --- built-in workflows --------------------------------------------------------------------------

def _lock_level(default: str) -> dict[str, Any]:
    return {"name": "lock_level", "type": "choice", "label": "Lock level", "options": ["partial", "implicit", "none"],
            "default": default}


_DESTINATION_FIELDS = [
    {"name": "destinationsite", "type": "site", "label": "Destination site", "required": True},
    {"name": "destinationqueue", "type": "queue", "label": "Destination queue", "default": "default"},
]
_ON_DESTINATION = {"site": "{destinationsite}", "queue": "{destinationqueue}"}

# The built-ins of ``product-notes.md``. Their rules take files ("type": "file"): directories
# found by a recursive walk are walked, not migrated.
BUILTIN_WORKFLOWS: tuple[dict[str, Any], ...] = (
    {
        "name": "migrate", "label": "Migrate", "icon_classes": ["fa", "fa-cloud-upload"],
        "discovery": "recursive", "discovery_options": {"skip_missing": False},
        "fields": [_lock_level("partial")],
        "filter_rules": [{"type": "file", "state": "all", "include": [], "exclude": [],
                          "action": [{"name": "migrate", "lock_level": "{lock_level}"}]}],
    },
    {
        "name": "premigrate", "label": "Premigrate", "icon_classes": ["fa", "fa-clone"],
        "discovery": "recursive", "discovery_options": {"skip_missing": False},
        "fields": [_lock_level("implicit")],
        "filter_rules": [{"type": "file", "state": "all", "include": [], "exclude": [],
                          "action": [{"name": "migrate", "premigrate": True, "lock_level": "{lock_level}"}]}],
    },
    {
        "name": "recall", "label": "Recall", "icon_classes": ["fa", "fa-cloud-download"],
        "discovery": "recursive", "discovery_options": {"skip_missing": False},
        "fields": [_lock_level("implicit")],
        "filter_rules": [{"type": "file", "state": "all", "include": [], "exclude": [],
                          "action": [{"name": "recall", "lock_level": "{lock_level}"}]}],
    },
    {
        "name": "send", "label": "Send to site", "icon_classes": ["fa", "fa-paper-plane"],
        "discovery": "recursive", "discovery_options": {"skip_missing": False},
        "fields": [*_DESTINATION_FIELDS,
                   {"name": "hydrate", "type": "bool", "label": "Hydrate on the destination", "default": False}],
        "filter_rules": [{"type": "file", "state": "all", "include": [], "exclude": [], "action": [
            {"name": "migrate", "premigrate": True},
            {"name": "reverse_stub", **_ON_DESTINATION, "hydrate": "{hydrate}"},
        ]}],
    },
    {
        # Needs snapdiff discovery: defined now, refused at launch until the agent can diff.
        "name": "site_sync", "label": "Site sync", "icon_classes": ["fa", "fa-refresh"],
        "discovery": "snapdiff", "discovery_options": {"skip_old_ctimes": False, "condense_moves": True},
        "fields": [*_DESTINATION_FIELDS,
                   {"name": "sync_preference", "type": "choice", "label": "When both sites changed a file",
                    "options": ["newest", "local", "ignore"], "default": "newest"}],
        "filter_rules": [
            *({"type": "file", "state": state, "include": [], "exclude": [], "action": [
                {"name": "migrate", "premigrate": True, "overwrite": True, "abort_missing": True},
                {"name": "reverse_stub", **_ON_DESTINATION, "sync_preference": "{sync_preference}"},
            ]} for state in ("created", "updated")),
            {"type": "file", "state": "moved", "include": [], "exclude": [],
             "action": [{"name": "move", **_ON_DESTINATION}]},
            {"type": "file", "state": "deleted", "include": [], "exclude": [],
             "action": [{"name": "delete", **_ON_DESTINATION}]},
        ],
    },
)
BUILTIN_NAMES = tuple(workflow["name"] for workflow in BUILTIN_WORKFLOWS)


def ensure_builtin_workflows(workflow_model: Any = None) -> list[str]:
    """Create the built-ins that do not exist (by name); the names created.

    Idempotent, and never touches an existing row: an administrator's edits to a built-in (its
    rules, a disabled or hidden flag) survive every later migration or call. ``workflow_model``
    is the migration's historical model (the current one by default).
    """
    if workflow_model is None:
        from workflows.models import Workflow as workflow_model
    existing = set(workflow_model.objects.filter(name__in=BUILTIN_NAMES).values_list("name", flat=True))
    created = []
    for definition in BUILTIN_WORKFLOWS:
        if definition["name"] in existing:
            continue
        workflow_model.objects.create(builtin=True, **_copy(definition))
        created.append(definition["name"])
    return created


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data (rows must not share the module's lists and dicts)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
