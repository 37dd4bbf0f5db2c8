"""Workflow definitions checked without a database: the task table against the agent's functions,
every rule of ``validate_definition``, and launch values (``resolve_field_values``) for every
field type but ``site`` (which needs the sites table: tests/workflows/test_workflow_definitions.py)."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest
from rest_framework.exceptions import ValidationError

from agent import actions
from agent.contract import HsmTask
from workflows.definitions import (
    BUILTIN_WORKFLOWS,
    DATA_TASKS,
    PASSTHROUGH,
    TASKS,
    resolve_field_values,
    validate_definition,
)

pytestmark = pytest.mark.smoke

LOCK_LEVEL = {"name": "lock_level", "type": "choice", "options": ["partial", "implicit", "none"], "default": "partial"}


def definition(**overrides: Any) -> dict[str, Any]:
    """A valid custom definition: migrate every file, with a lock level and a destination."""
    base = {
        "discovery": "recursive",
        "discovery_options": {"skip_missing": False},
        "preferred_queue": "",
        "fields": [
            copy.deepcopy(LOCK_LEVEL),
            {"name": "destinationsite", "type": "site", "required": True},
            {"name": "hydrate", "type": "bool", "default": False},
        ],
        "filter_rules": [{"type": "file", "state": "all", "include": ["*.dat"], "exclude": [],
                          "action": [{"name": "migrate", "lock_level": "{lock_level}"}]}],
    }
    base.update(overrides)
    return base


def rule(*steps: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return {"type": "file", "state": "all", "action": list(steps), **keys}


def problems(data: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        validate_definition(data)
    return {key: [str(message) for message in messages] for key, messages in caught.value.detail.items()}


def one_problem(data: dict[str, Any], key: str) -> str:
    found = problems(data)
    assert list(found) == [key], found
    assert len(found[key]) == 1, found
    return found[key][0]


# --- the task table ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DATA_TASKS)
def test_every_data_task_names_the_agent_task_and_only_options_its_function_accepts(name):
    spec = TASKS[name]
    assert spec.wire == getattr(HsmTask, name.upper())
    accepted = set(inspect.signature(getattr(actions, name)).parameters) - {"ctx", "paths", "jobid"}
    assert set(spec.options) <= accepted
    assert not spec.discovery


def test_discovery_tasks_are_marked_and_named_for_the_agent():
    assert TASKS["recursive_navigate"].discovery and TASKS["snapdiff"].discovery
    assert TASKS["recursive_navigate"].wire == "agent.recursive_navigate"
    assert TASKS["snapdiff"].wire == "agent.snapdiff"
    assert set(DATA_TASKS) == {"migrate", "recall", "reverse_stub", "delete", "move"}


def test_only_migrate_and_reverse_stub_have_their_target_chosen_by_the_hub():
    assert {name for name, spec in TASKS.items() if spec.needs_target} == {"migrate", "reverse_stub"}


def test_lock_level_is_the_documented_passthrough():
    assert frozenset({"lock_level"}) == PASSTHROUGH


# --- built-ins -----------------------------------------------------------------------------------

@pytest.mark.parametrize("builtin", BUILTIN_WORKFLOWS, ids=lambda w: w["name"])
def test_every_builtin_is_a_valid_definition_unchanged_by_validation(builtin):
    cleaned = validate_definition(builtin)
    for key in ("fields", "filter_rules", "discovery", "discovery_options"):
        assert cleaned[key] == builtin[key]


def test_builtins_are_the_five_of_the_product_notes():
    by_name = {w["name"]: w for w in BUILTIN_WORKFLOWS}
    assert list(by_name) == ["migrate", "premigrate", "recall", "send", "site_sync"]
    assert by_name["site_sync"]["discovery"] == "snapdiff"
    assert all(by_name[n]["discovery"] == "recursive" for n in ("migrate", "premigrate", "recall", "send"))
    assert all(r["type"] == "file" for w in BUILTIN_WORKFLOWS for r in w["filter_rules"])


# --- a valid definition --------------------------------------------------------------------------

def test_a_valid_definition_passes_and_keeps_what_it_was_given():
    data = definition()
    assert validate_definition(data) == data


def test_missing_rule_type_state_and_globs_are_filled_with_their_defaults():
    cleaned = validate_definition(definition(filter_rules=[{"action": [{"name": "recall"}]}]))
    assert cleaned["filter_rules"] == [
        {"type": "all", "state": "all", "include": [], "exclude": [], "action": [{"name": "recall"}]}
    ]


def test_an_empty_discovery_means_none_and_missing_options_and_queue_are_empty():
    cleaned = validate_definition({"discovery": "", "filter_rules": [rule({"name": "recall"})]})
    assert cleaned["discovery"] is None
    assert cleaned["discovery_options"] == {} and cleaned["preferred_queue"] == "" and cleaned["fields"] == []


def test_keys_outside_the_definition_pass_through():
    assert validate_definition(definition(label="Mine"))["label"] == "Mine"


@pytest.mark.parametrize("step", [
    {"name": "recall", "target": "archive", "verify": False, "default_uid": None, "default_gid": 1000},
    {"name": "delete", "target": "archive", "abort_missing": True},
    {"name": "move", "destination": "/mmfs1/new", "source_root": "/mmfs1/old", "overwrite": True},
    {"name": "migrate", "premigrate": True, "stub_size": 4096, "verify_content": True},
    {"name": "migrate", "lock_level": "implicit"},
    {"name": "reverse_stub", "site": "{destinationsite}", "queue": "fast", "hydrate": "{hydrate}"},
    {"name": "reverse_stub", "site": "otherlab", "hydrate": True},
    {"name": "recall", "hydrate": "x"},  # named like a field: forwarded, ignored by recall
    {"name": "recall", "note": "{lock_level}"},  # refers to a field: forwarded
])
def test_steps_with_known_options_fields_and_routing_are_accepted(step):
    validate_definition(definition(filter_rules=[rule(step)]))


# --- rules ---------------------------------------------------------------------------------------

def test_an_unknown_task_is_named_with_the_known_ones():
    message = one_problem(definition(filter_rules=[rule({"name": "recall"}), rule({"name": "migrat"})]),
                          "filter_rules")
    assert message == ("rule 1, step 0: unknown task 'migrat' (known: delete, migrate, move, recall, "
                       "reverse_stub).")


def test_a_step_without_a_name_is_refused():
    assert "'name' (the task to run) is missing" in one_problem(definition(filter_rules=[rule({"hydrate": True})]),
                                                                "filter_rules")


@pytest.mark.parametrize("name", ["recursive_navigate", "snapdiff"])
def test_a_discovery_task_in_a_chain_is_refused(name):
    assert "is a discovery task" in one_problem(definition(filter_rules=[rule({"name": name})]), "filter_rules")


def test_an_unknown_rule_key_is_refused():
    message = one_problem(definition(filter_rules=[rule({"name": "recall"}, actions=[])]), "filter_rules")
    assert "rule 0: unknown key(s) actions" in message


@pytest.mark.parametrize(("key", "value"), [("type", "folder"), ("state", "renamed"), ("type", None)])
def test_a_bad_rule_type_or_state_is_refused(key, value):
    message = one_problem(definition(filter_rules=[rule({"name": "recall"}, **{key: value})]), "filter_rules")
    assert f"rule 0: unknown {key}" in message


@pytest.mark.parametrize("globs", ["*.tmp", {"a": 1}, [""], [3], ["ok", None], ["x" * 1025], ["a\nb"]])
@pytest.mark.parametrize("key", ["include", "exclude"])
def test_globs_must_be_lists_of_non_empty_strings(key, globs):
    message = one_problem(definition(filter_rules=[rule({"name": "recall"}, **{key: globs})]), "filter_rules")
    assert f"'{key}'" in message


@pytest.mark.parametrize("action", [[], None, {"name": "migrate"}, "migrate"])
def test_an_action_must_be_a_non_empty_list(action):
    data = definition(filter_rules=[{"type": "file", "state": "all", "action": action}])
    assert "'action' must be a non-empty list" in one_problem(data, "filter_rules")


def test_a_rule_without_an_action_is_refused():
    assert "'action'" in one_problem(definition(filter_rules=[{"type": "file"}]), "filter_rules")


@pytest.mark.parametrize("value", [None, [], "rules", {"type": "file"}])
def test_filter_rules_must_be_a_non_empty_list(value):
    one_problem(definition(filter_rules=value), "filter_rules")


def test_a_step_must_be_an_object():
    assert "rule 0, step 1: expected an object" in one_problem(
        definition(filter_rules=[rule({"name": "recall"}, "migrate")]), "filter_rules")


@pytest.mark.parametrize("task", ["migrate", "reverse_stub"])
def test_a_rule_cannot_hard_code_the_target_of_a_task_whose_target_the_hub_chooses(task):
    message = one_problem(definition(filter_rules=[rule({"name": task, "target": "archive"})]), "filter_rules")
    assert "'target' is chosen by the hub" in message


def test_an_unknown_option_is_refused_with_the_known_ones():
    message = one_problem(definition(filter_rules=[rule({"name": "migrate", "premigrated": True})]), "filter_rules")
    assert "rule 0, step 0 ('migrate'): unknown option 'premigrated'" in message
    assert "premigrate" in message and "lock_level" in message and "target" not in message.split("known:")[1]


@pytest.mark.parametrize("key", ["paths", "jobid"])
def test_what_the_hub_gives_a_task_cannot_be_set(key):
    assert f"'{key}' is given by the hub" in one_problem(
        definition(filter_rules=[rule({"name": "recall", key: 1})]), "filter_rules")


@pytest.mark.parametrize(("step", "words"), [
    ({"name": "migrate", "premigrate": "yes"}, "'premigrate' must be true or false"),
    ({"name": "migrate", "stub_size": -1}, "'stub_size' must be a whole number >= 0"),
    ({"name": "migrate", "stub_size": True}, "'stub_size' must be a whole number >= 0"),
    ({"name": "migrate", "overwrite": None}, "'overwrite' must not be null"),
    ({"name": "recall", "target": ""}, "'target' must be a non-empty string"),
    ({"name": "move", "destination": "relative/dir"}, "'destination' must be an absolute path"),
    ({"name": "move", "destination": "/a/../b"}, "'destination' must be an absolute path"),
])
def test_a_hard_coded_option_of_the_wrong_kind_is_refused(step, words):
    assert words in one_problem(definition(filter_rules=[rule(step)]), "filter_rules")


def test_a_reference_to_an_undefined_field_is_refused():
    message = one_problem(definition(filter_rules=[rule({"name": "migrate", "lock_level": "{lock}"})]),
                          "filter_rules")
    assert message == ("rule 0, step 0 ('migrate'): 'lock_level' refers to field 'lock', which the workflow does "
                       "not define.")


@pytest.mark.parametrize("key", ["site", "queue"])
def test_a_routing_reference_to_an_undefined_field_is_refused(key):
    assert "refers to field 'elsewhere'" in one_problem(
        definition(filter_rules=[rule({"name": "recall", key: "{elsewhere}"})]), "filter_rules")


def test_a_reference_to_a_field_of_the_wrong_type_is_refused():
    message = one_problem(definition(filter_rules=[rule({"name": "reverse_stub", "hydrate": "{lock_level}"})]),
                          "filter_rules")
    assert "'hydrate' needs a bool value but field 'lock_level' is of type 'choice'" in message


@pytest.mark.parametrize(("key", "value", "words"), [
    ("site", "{hydrate}", "of type 'bool'"),
    ("site", "two words", "must be a site name"),
    ("queue", "a.b", "must be a queue name"),
    ("queue", 7, "must be a queue name"),
])
def test_a_step_routes_only_to_a_site_or_queue_name_or_a_fitting_field(key, value, words):
    assert words in one_problem(definition(filter_rules=[rule({"name": "recall", key: value})]), "filter_rules")


# --- fields --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "words"), [
    ({"name": "a"}, "Expected a list of fields"),
    (["lock_level"], "field 0: expected an object"),
    ([LOCK_LEVEL, LOCK_LEVEL], "field 1 ('lock_level'): the name 'lock_level' is used by another field"),
    ([{"name": "lock level", "type": "string"}], "'name' must be an identifier"),
    ([{"name": "1st", "type": "string"}], "'name' must be an identifier"),
    ([{"type": "string"}], "'name' must be an identifier"),
    ([{"name": "n", "type": "float"}], "unknown type 'float'"),
    ([{"name": "n", "type": "string", "help": "x"}], "unknown key(s) help"),
    ([{"name": "n", "type": "choice"}], "a 'choice' field needs 'options'"),
    ([{"name": "n", "type": "choice", "options": []}], "a 'choice' field needs 'options'"),
    ([{"name": "n", "type": "choice", "options": ["a", "a"]}], "the options repeat a value"),
    ([{"name": "n", "type": "choice", "options": [["a"]]}], "each option must be a string or an integer"),
    ([{"name": "n", "type": "choice", "options": ["a", "b"], "default": "c"}], "the default 'c' must be one of: a, b"),
    ([{"name": "n", "type": "choice", "options": [1, 2], "default": True}], "the default True must be one of: 1, 2"),
    ([{"name": "n", "type": "string", "options": ["a"]}], "'options' is only for fields of type 'choice'"),
    ([{"name": "n", "type": "bool", "default": "false"}], "the default 'false' must be true or false"),
    ([{"name": "n", "type": "int", "default": "3"}], "the default '3' must be an integer"),
    ([{"name": "n", "type": "int", "default": False}], "the default False must be an integer"),
    ([{"name": "n", "type": "string", "default": 3}], "the default 3 must be a string"),
    ([{"name": "n", "type": "queue", "default": "a b"}], "must be a queue name"),
    ([{"name": "n", "type": "site", "default": "a/b"}], "must be a site name"),
    ([{"name": "n", "type": "path", "default": "data"}], "must be an absolute path"),
    ([{"name": "n", "type": "string", "required": "yes"}], "'required' must be true or false"),
    ([{"name": "n", "type": "string", "label": ["x"]}], "'label' must be a string"),
])
def test_a_bad_field_is_refused_naming_the_field_and_the_problem(fields, words):
    data = definition(fields=fields, filter_rules=[rule({"name": "recall"})])
    assert words in one_problem(data, "fields")


def test_a_rule_is_checked_against_the_well_formed_fields_only():
    fields = [{"name": "n", "type": "float"}]
    found = problems(definition(fields=fields, filter_rules=[rule({"name": "recall", "x": "{n}"})]))
    assert "unknown type 'float'" in found["fields"][0]
    assert "refers to field 'n'" in found["filter_rules"][0]


# --- discovery, options, queue -------------------------------------------------------------------

@pytest.mark.parametrize("value", ["deep", 1, "Recursive"])
def test_an_unknown_discovery_is_refused(value):
    assert "Unknown discovery" in one_problem(definition(discovery=value), "discovery")


@pytest.mark.parametrize(("options", "words"), [
    ([], "Expected an object"),
    ({"skip_misssing": True}, "Unknown option 'skip_misssing'"),
    ({"skip_missing": "no"}, "'skip_missing' must be true or false"),
    ({"max_entries": 0}, "'max_entries' must be a whole number >= 1"),
    ({"max_entries": "many"}, "'max_entries' must be a whole number"),
    ({"condense_moves": 1}, "'condense_moves' must be true or false"),
    ({"skip_old_ctimes": None}, "'skip_old_ctimes' must not be null"),
])
def test_discovery_options_must_be_known_and_of_the_right_type(options, words):
    assert words in one_problem(definition(discovery_options=options), "discovery_options")


def test_every_discovery_option_is_accepted_whatever_the_discovery():
    options = {"skip_missing": True, "max_entries": 500, "skip_old_ctimes": True, "condense_moves": False}
    assert validate_definition(definition(discovery=None, discovery_options=options))["discovery_options"] == options


@pytest.mark.parametrize("queue", ["has space", "a.b", "x" * 101, 5, "ü"])
def test_a_preferred_queue_must_be_a_queue_name(queue):
    assert "[a-zA-Z0-9-_]+" in one_problem(definition(preferred_queue=queue), "preferred_queue")


@pytest.mark.parametrize("queue", ["", None, "fast-lane_2"])
def test_an_empty_or_well_formed_preferred_queue_is_accepted(queue):
    assert validate_definition(definition(preferred_queue=queue))["preferred_queue"] == (queue or "")


def test_every_problem_is_reported_at_once():
    data = definition(discovery="deep", preferred_queue="a b", fields=[{"name": "x", "type": "nope"}],
                      filter_rules=[rule({"name": "migrat"}), rule({"name": "migrate", "stub_size": "1"})])
    found = problems(data)
    assert set(found) == {"discovery", "preferred_queue", "fields", "filter_rules"}
    assert len(found["filter_rules"]) == 2


# --- launch values -------------------------------------------------------------------------------

FIELDS = [
    copy.deepcopy(LOCK_LEVEL),
    {"name": "hydrate", "type": "bool", "default": False},
    {"name": "count", "type": "int"},
    {"name": "note", "type": "string", "required": False},
    {"name": "queue", "type": "queue", "default": "default"},
    {"name": "where", "type": "path", "required": False},
]


def field_problems(given: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        resolve_field_values(FIELDS, given)
    return caught.value.detail["fields"]


def test_defaults_fill_what_a_launch_does_not_give():
    assert resolve_field_values(FIELDS, {"count": 2}) == {
        "lock_level": "partial", "hydrate": False, "count": 2, "note": None, "queue": "default", "where": None,
    }


def test_given_values_replace_defaults():
    values = resolve_field_values(FIELDS, {"lock_level": "none", "hydrate": True, "count": 0, "note": "hi",
                                           "queue": "fast", "where": "/mmfs1/x"})
    assert values == {"lock_level": "none", "hydrate": True, "count": 0, "note": "hi", "queue": "fast",
                      "where": "/mmfs1/x"}


def test_an_empty_queue_means_the_sites_default_queue():
    assert resolve_field_values(FIELDS, {"count": 1, "queue": ""})["queue"] == ""


def test_null_means_not_given():
    assert resolve_field_values(FIELDS, {"count": 1, "hydrate": None})["hydrate"] is False


def test_a_required_field_without_default_must_be_given():
    assert field_problems({}) == {"count": ["This field is required."]}


def test_a_field_the_workflow_does_not_have_is_refused():
    found = field_problems({"count": 1, "lock": "none"})
    assert list(found) == ["lock"] and "has no field 'lock'" in str(found["lock"][0])


@pytest.mark.parametrize(("name", "value"), [
    ("lock_level", "full"), ("hydrate", "true"), ("hydrate", 1), ("count", "2"), ("count", True), ("count", 1.5),
    ("note", 3), ("queue", "a.b"), ("where", "relative"), ("where", "/a/../b"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(name, value):
    assert list(field_problems({"count": 1, name: value})) == [name]


def test_launch_values_must_be_an_object():
    with pytest.raises(ValidationError) as caught:
        resolve_field_values(FIELDS, ["count", 1])
    assert "fields" in caught.value.detail


def test_a_workflow_without_fields_takes_no_values():
    assert resolve_field_values([], None) == {}
    assert resolve_field_values([], {}) == {}
