"""The job planner (``workflows.dag``): routing, batching, chains, the ready set and final states.

No database and no Django: the planner is plain Python, and one test proves it imports where
Django cannot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workflows.dag import (
    Entry,
    MissingField,
    NodeView,
    Rule,
    Step,
    auto_batch_files,
    batches,
    compile_rules,
    first_match,
    job_final_state,
    job_running_state,
    next_items,
    referenced_fields,
    route,
    settle,
)

ROOT = Path(__file__).resolve().parents[2]

SEND_RULES = [{
    "type": "file", "state": "all",
    "action": [
        {"name": "migrate", "premigrate": True, "lock_level": "{lock_level}"},
        {"name": "reverse_stub", "site": "{destinationsite}", "queue": "{destinationqueue}", "hydrate": "{hydrate}"},
    ],
}]


def rule(index: int = 0, *, type: str = "all", state: str = "all", include: tuple[str, ...] = (),
         exclude: tuple[str, ...] = (), steps: tuple[Step, ...] = (Step("migrate"),)) -> Rule:
    return Rule(index=index, type=type, state=state, include=include, exclude=exclude, steps=steps)


def paths(entries: list[Entry]) -> list[str]:
    return [e.path for e in entries]


def test_dag_imports_where_django_cannot():
    code = (
        "import sys, importlib.abc\n"
        "class NoDjango(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'django':\n"
        "            raise ImportError('no django here')\n"
        "        return None\n"
        "sys.meta_path.insert(0, NoDjango())\n"
        "import workflows.dag\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'hub', 'sites', 'agent'}\n"
        "             or (m.startswith('workflows.') and m != 'workflows.dag'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PATH": "/usr/bin:/bin",
                            "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- entries -------------------------------------------------------------------------------------

def test_entry_item_carries_size_state_and_extra_and_omits_unknowns():
    assert Entry("/a").item() == {"path": "/a"}
    entry = Entry("/a", state="created", size=5, extra={"key": "k1"})
    assert entry.item() == {"path": "/a", "size": 5, "state": "created", "key": "k1"}


def test_entry_from_a_launch_path_keeps_unknown_keys_as_extra():
    assert Entry.from_item("/x") == Entry("/x")
    entry = Entry.from_item({"path": "/d", "type": "directory", "size": 3, "destination": "/e"})
    assert (entry.type, entry.size, entry.state, dict(entry.extra)) == ("directory", 3, None, {"destination": "/e"})


def test_entries_are_hashable_despite_their_extra_mapping():
    assert len({Entry("/a", extra={"key": "k"}), Entry("/a", extra={"key": "k"})}) == 1


# --- compiling rules -----------------------------------------------------------------------------

def test_field_references_are_replaced_by_the_launch_values():
    rules = compile_rules([{"type": "file", "state": "all",
                            "action": [{"name": "migrate", "lock_level": "{lock_level}", "note": "{a}/x"}]}],
                          {"lock_level": "partial"})
    assert rules[0].steps == (Step("migrate", {"lock_level": "partial", "note": "{a}/x"}),)
    assert (rules[0].index, rules[0].type, rules[0].state) == (0, "file", "all")


def test_a_reference_to_a_field_without_value_raises_a_key_error_naming_it():
    with pytest.raises(KeyError, match="destinationsite") as caught:
        compile_rules(SEND_RULES, {"lock_level": "implicit", "destinationqueue": "", "hydrate": False})
    assert isinstance(caught.value, MissingField)
    assert (caught.value.field, caught.value.rule, caught.value.step) == ("destinationsite", 0, "reverse_stub")


def test_send_chain_routes_its_second_step_to_the_destination_site_and_queue():
    rules = compile_rules(SEND_RULES, {"lock_level": "implicit", "destinationsite": "site-b",
                                       "destinationqueue": "fast", "hydrate": True})
    first, second = rules[0].steps
    assert first == Step("migrate", {"premigrate": True, "lock_level": "implicit"}, site=None, queue=None)
    assert second == Step("reverse_stub", {"hydrate": True}, site="site-b", queue="fast")
    assert "site" not in second.kwargs and "queue" not in second.kwargs


def test_an_empty_destination_queue_means_the_sites_default():
    rules = compile_rules(SEND_RULES, {"lock_level": "implicit", "destinationsite": "site-b",
                                       "destinationqueue": "", "hydrate": False})
    assert rules[0].steps[1].queue is None and rules[0].steps[1].site == "site-b"


def test_literal_site_and_queue_kwargs_are_routing_too():
    rules = compile_rules([{"type": "all", "state": "all",
                            "action": [{"name": "recall", "site": "b", "queue": "q"}]}], {})
    assert rules[0].steps == (Step("recall", {}, site="b", queue="q"),)


def test_rule_type_and_state_default_to_all_and_unknown_ones_are_refused():
    assert compile_rules([{"action": [{"name": "migrate"}]}], {})[0].type == "all"
    with pytest.raises(ValueError, match="type 'fifo'"):
        compile_rules([{"type": "fifo", "state": "all", "action": []}], {})
    with pytest.raises(ValueError, match="state 'renamed'"):
        compile_rules([{"type": "file", "state": "renamed", "action": []}], {})


def test_referenced_fields_lists_every_whole_string_reference():
    assert referenced_fields(SEND_RULES) == {"lock_level", "destinationsite", "destinationqueue", "hydrate"}


# --- routing -------------------------------------------------------------------------------------

def test_each_entry_goes_to_the_first_rule_whose_type_matches():
    rules = [rule(0, type="directory"), rule(1, type="file"), rule(2, type="all")]
    entries = [Entry("/a", type="file"), Entry("/d", type="directory"), Entry("/l", type="symlink"),
               Entry("/b", type="file")]
    routing = route(entries, rules)
    assert {i: paths(e) for i, e in routing.by_rule.items()} == {0: ["/d"], 1: ["/a", "/b"], 2: ["/l"]}
    assert routing.unmatched == []


def test_an_entry_no_rule_takes_is_unmatched_with_a_reason():
    routing = route([Entry("/d", type="directory")], [rule(0, type="file")])
    assert routing.by_rule == {}
    assert routing.unmatched == [(Entry("/d", type="directory"), "no rule matched")]


def test_state_rules_match_their_state_and_all_matches_any():
    rules = [rule(0, state="deleted"), rule(1, state="moved"), rule(2, state="all")]
    entries = [Entry("/c", state="created"), Entry("/m", state="moved"), Entry("/x", state="deleted"),
               Entry("/r")]
    routing = route(entries, rules)
    assert {i: paths(e) for i, e in routing.by_rule.items()} == {0: ["/x"], 1: ["/m"], 2: ["/c", "/r"]}


def test_default_rules_are_tried_after_every_other_rule_whatever_their_position():
    rules = [rule(0, state="default"), rule(1, state="created"), rule(2, state="all", include=("*.txt",))]
    entries = [Entry("/a.txt", state="updated"), Entry("/b.bin", state="created"),
               Entry("/c.bin", state="updated"), Entry("/d.bin")]
    routing = route(entries, rules)
    assert {i: paths(e) for i, e in routing.by_rule.items()} == {0: ["/c.bin", "/d.bin"], 1: ["/b.bin"],
                                                                  2: ["/a.txt"]}


def test_a_rules_own_globs_send_entries_on_to_the_next_rule():
    rules = [rule(0, include=("*.dat",), exclude=("big-*",)), rule(1)]
    entries = [Entry("/x/a.dat"), Entry("/x/big-1.dat"), Entry("/x/a.txt")]
    routing = route(entries, rules)
    assert {i: paths(e) for i, e in routing.by_rule.items()} == {0: ["/x/a.dat"], 1: ["/x/big-1.dat", "/x/a.txt"]}


def test_globs_with_a_slash_match_the_whole_path_others_the_basename():
    assert first_match("/data/scratch/a.tmp", ["*.tmp"]) == "*.tmp"
    assert first_match("/data/scratch/a.tmp", ["scratch/*"]) is None
    assert first_match("/data/scratch/a.tmp", ["/data/scratch/*"]) == "/data/scratch/*"
    assert first_match("/data/scratch/sub/", ["sub"]) == "sub"
    assert first_match("/data/A.TMP", ["*.tmp"]) is None  # case-sensitive, as file systems are


def test_site_and_job_filters_run_before_the_rules_and_say_why():
    entries = [Entry("/s/a.tmp"), Entry("/s/b.log"), Entry("/s/c.dat"), Entry("/other/d.dat"), Entry("/s/e.dat")]
    routing = route(entries, [rule(0)], include=("/s/*",), exclude=("c.*",), site_exclude=("*.tmp",),
                    site_include=("*.tmp", "*.dat", "*.log"))
    assert paths(routing.by_rule[0]) == ["/s/b.log", "/s/e.dat"]
    assert [(e.path, why) for e, why in routing.unmatched] == [
        ("/s/a.tmp", "excluded by site exclude '*.tmp'"),
        ("/s/c.dat", "excluded by job exclude 'c.*'"),
        ("/other/d.dat", "matches no job include"),
    ]


def test_a_site_include_that_nothing_matches_leaves_the_entry_unmatched():
    routing = route([Entry("/s/a.bin")], [rule(0)], site_include=("*.dat",))
    assert routing.unmatched == [(Entry("/s/a.bin"), "matches no site include")]


def test_routing_keeps_input_order_within_a_rule():
    entries = [Entry(f"/f{i}") for i in (3, 1, 2)]
    assert paths(route(entries, [rule(0)]).by_rule[0]) == ["/f3", "/f1", "/f2"]


# --- batching ------------------------------------------------------------------------------------

def sized(*sizes: int | None) -> list[Entry]:
    return [Entry(f"/f{i}", size=s) for i, s in enumerate(sizes)]


def test_batches_split_by_count_keeping_order():
    out = batches(sized(*[1] * 7), max_files=3, max_bytes=None)
    assert [paths(b) for b in out] == [["/f0", "/f1", "/f2"], ["/f3", "/f4", "/f5"], ["/f6"]]


def test_batches_split_by_bytes():
    out = batches(sized(4, 4, 4, 1, 10), max_files=100, max_bytes=10)
    assert [[e.size for e in b] for b in out] == [[4, 4], [4, 1], [10]]


def test_an_entry_larger_than_the_byte_limit_is_a_batch_of_its_own():
    out = batches(sized(1, 50, 0, 2), max_files=100, max_bytes=10)
    assert [[e.size for e in b] for b in out] == [[1], [50], [0, 2]]


def test_unknown_sizes_count_as_zero_bytes():
    out = batches(sized(None, None, 10, None), max_files=100, max_bytes=10)
    assert [len(b) for b in out] == [4]


def test_batching_nothing_gives_no_batch_and_bad_limits_are_refused():
    assert batches([], max_files=5, max_bytes=10) == []
    assert [len(b) for b in batches(sized(5, 5, 5), max_files=2, max_bytes=0)] == [2, 1]  # 0: no byte limit
    with pytest.raises(ValueError):
        batches(sized(1), max_files=0, max_bytes=None)
    with pytest.raises(ValueError):
        batches(sized(1), max_files=1, max_bytes=-1)


def test_auto_batch_size_aims_at_the_target_duration_within_bounds():
    # 1000 files in 10 s over two batches: 100 files/s, so 30 s is 3000 files.
    assert auto_batch_files([(400, 0, 4.0), (600, 0, 6.0)], target_seconds=30, minimum=10, maximum=10_000) == 3000
    assert auto_batch_files([(10, 0, 10.0)], target_seconds=30, minimum=50, maximum=100) == 50
    assert auto_batch_files([(10_000, 0, 1.0)], target_seconds=30, minimum=50, maximum=5000) == 5000


def test_auto_batch_size_starts_at_the_minimum_and_jumps_to_the_maximum_when_too_fast_to_time():
    assert auto_batch_files([], target_seconds=30, minimum=50, maximum=5000) == 50
    assert auto_batch_files([(100, 0, 0.0)], target_seconds=30, minimum=50, maximum=5000) == 5000
    with pytest.raises(ValueError):
        auto_batch_files([], target_seconds=30, minimum=10, maximum=5)


# --- settle: the ready set and skip propagation --------------------------------------------------

def test_roots_with_input_are_ready_and_dispatched_or_running_ones_are_not():
    nodes = [NodeView(1, "PENDING"), NodeView(2, "PENDING", dispatched=True), NodeView(3, "STARTED")]
    assert settle(nodes, has_input={1: True, 2: True, 3: True}) == ([1], [])


def test_a_step_is_ready_when_every_parent_succeeded_or_errored():
    nodes = [NodeView(1, "SUCCESS"), NodeView(2, "ERROR"), NodeView(3, "PENDING", (1, 2)),
             NodeView(4, "STARTED"), NodeView(5, "PENDING", (1, 4))]
    assert settle(nodes, has_input={3: True, 5: True}) == ([3], [])


def test_a_failed_parent_skips_the_rest_of_its_chain_to_a_fixed_point():
    # 1 -> 2 -> 3 -> 4, and 5 waits on both 3 and a running 6: all of 2..5 are skipped at once.
    nodes = [NodeView(5, "PENDING", (3, 6)), NodeView(4, "PENDING", (3,)), NodeView(3, "PENDING", (2,)),
             NodeView(2, "PENDING", (1,)), NodeView(1, "FAILURE"), NodeView(6, "STARTED")]
    ready, to_skip = settle(nodes, has_input={})
    assert ready == []
    assert to_skip == [5, 4, 3, 2]


@pytest.mark.parametrize("state", ["SKIPPED", "CANCELLED"])
def test_skipped_and_cancelled_parents_stop_their_children(state):
    assert settle([NodeView(1, state), NodeView(2, "PENDING", (1,))], has_input={2: True}) == ([], [2])


def test_a_step_whose_parents_processed_nothing_is_skipped_with_its_children():
    nodes = [NodeView(1, "ERROR"), NodeView(2, "PENDING", (1,)), NodeView(3, "PENDING", (2,))]
    assert settle(nodes, has_input={2: False, 3: True}) == ([], [2, 3])


def test_a_dispatched_task_is_never_skipped():
    nodes = [NodeView(1, "FAILURE"), NodeView(2, "PENDING", (1,), dispatched=True)]
    assert settle(nodes, has_input={}) == ([], [])


def test_a_parent_outside_the_view_counts_as_still_running():
    assert settle([NodeView(2, "PENDING", (99,))], has_input={2: True}) == ([], [])


def test_a_candidate_without_an_input_flag_is_an_engine_bug_not_a_guess():
    with pytest.raises(KeyError):
        settle([NodeView(1, "SUCCESS"), NodeView(2, "PENDING", (1,))], has_input={})


def test_independent_chains_settle_independently():
    # Two batches of one rule: batch A's first step failed, batch B's succeeded.
    nodes = [NodeView(1, "FAILURE"), NodeView(2, "PENDING", (1,)),
             NodeView(3, "SUCCESS"), NodeView(4, "PENDING", (3,))]
    assert settle(nodes, has_input={2: True, 4: True}) == ([4], [2])


# --- next items and job states -------------------------------------------------------------------

def test_only_processed_paths_go_on_with_their_size_and_key():
    given = [{"path": "/a", "size": 1}, {"path": "/b", "size": 2}, {"path": "/c", "size": 3}, {"path": "/d"}]
    outcomes = [{"path": "/a", "status": "processed", "key": "k-a"},
                {"path": "/b", "status": "failed", "message": "no space"},
                {"path": "/c", "status": "processed", "size": 30},
                {"path": "/d", "status": "processed"},
                {"path": "/e", "status": "aborted"}]
    assert next_items(given, outcomes) == [{"path": "/a", "size": 1, "key": "k-a"}, {"path": "/c", "size": 30},
                                           {"path": "/d"}]


def test_skipped_and_aborted_paths_do_not_go_on():
    outcomes = [{"path": "/a", "status": "skipped"}, {"path": "/b", "status": "aborted"}]
    assert next_items([{"path": "/a"}, {"path": "/b"}], outcomes) == []


@pytest.mark.parametrize(("counts", "expected"), [
    ({"cancelled": True, "processed": 5, "failed": 1}, "CANCELLED"),
    ({"processed": 5, "failed": 1}, "HAS_FAILURES"),
    ({"processed": 5, "task_failures": 1}, "HAS_FAILURES"),
    ({"failed": 3}, "FAILURE"),
    ({"task_failures": 1}, "FAILURE"),
    ({}, "SKIPPED"),
    ({"aborted": 2, "skipped": 4}, "SKIPPED"),
    ({"processed": 5, "aborted": 1, "skipped": 2}, "SUCCESS"),
])
def test_job_final_state(counts, expected):
    kwargs = {"cancelled": False, "processed": 0, "failed": 0, "aborted": 0, "skipped": 0, "task_failures": 0}
    assert job_final_state(**{**kwargs, **counts}) == expected


def test_a_running_job_is_failing_once_anything_failed():
    assert job_running_state(failures=True) == "FAILING"
    assert job_running_state(failures=False) == "STARTED"
