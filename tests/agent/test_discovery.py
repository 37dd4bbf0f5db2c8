"""Discovery on the agent (``agent.discovery.recursive_navigate``) over a real directory tree:
one page of a directory per call with markers, subdirectories named for the hub's fan-out,
symlinks listed but never followed, refusals and missing paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import actions
from agent.actions import ActionContext
from agent.app import DATA_TASKS
from agent.contract import HsmTask
from agent.discovery import recursive_navigate
from agent.drivers.memory import MemoryStore
from agent.drivers.posix import EntryKind
from agent.hsm.state import HsmState

pytestmark = pytest.mark.smoke


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("not yours")
    return folder


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore("archive")


def context(space: Path, store: MemoryStore | None = None, **options) -> ActionContext:
    def open_target(name: str) -> MemoryStore:
        if store is None or name != "archive":
            raise KeyError(name)
        return store

    return ActionContext(roots=[str(space)], open_target=open_target, **options)


def navigate(space: Path, *paths: str | Path, store: MemoryStore | None = None, **options):
    return recursive_navigate(context(space, store), [{"path": str(p)} for p in paths], **options)


def walk_pages(space: Path, directory: Path, max_entries: int) -> tuple[list[dict], int]:
    """Every entry of ``directory``, following ``next_marker`` as the hub does; and the page count."""
    found: list[dict] = []
    marker, pages = "", 0
    while True:
        [page] = navigate(space, directory, max_entries=max_entries, marker=marker)
        assert page["status"] == "processed", page
        assert len(page["entries"]) <= max_entries
        found.extend(page["entries"])
        pages += 1
        if "next_marker" not in page:
            return found, pages
        marker = page["next_marker"]


def test_a_file_given_directly_is_its_own_single_entry(space: Path):
    report = space / "report.pdf"
    report.write_bytes(b"%PDF" * 100)

    [outcome] = navigate(space, report)

    assert outcome["status"] == "processed"
    [entry] = outcome["entries"]
    assert entry["path"] == str(report) and entry["type"] == "file" and entry["size"] == 400
    assert entry["state"] == HsmState.UNMANAGED and entry["mtime_ns"] == report.stat().st_mtime_ns
    assert "directories" not in outcome and "next_marker" not in outcome


def test_a_directory_lists_its_direct_children_and_names_its_subdirectories(space: Path):
    (space / "a.txt").write_text("a")
    (space / "sub").mkdir()
    (space / "sub" / "deep.txt").write_text("below the page")
    (space / "other").mkdir()

    [outcome] = navigate(space, space)

    assert outcome["status"] == "processed"
    assert [(e["path"], e["type"]) for e in outcome["entries"]] == [
        (str(space / "a.txt"), "file"), (str(space / "other"), "directory"), (str(space / "sub"), "directory")]
    assert outcome["directories"] == [str(space / "other"), str(space / "sub")]
    assert all(e["size"] == 0 for e in outcome["entries"] if e["type"] == "directory")
    assert "next_marker" not in outcome


def test_a_large_directory_is_read_one_page_at_a_time_without_gaps_or_repeats(space: Path):
    names = [f"file-{i:03d}" for i in range(23)] + ["dir-a", "dir-b"]
    for name in names:
        if name.startswith("dir"):
            (space / name).mkdir()
        else:
            (space / name).write_text(name)

    found, pages = walk_pages(space, space, max_entries=5)

    assert pages == 5
    assert [Path(e["path"]).name for e in found] == sorted(names)


def test_subdirectories_are_listed_per_page(space: Path):
    for i in range(6):
        (space / f"d{i}").mkdir()

    [first] = navigate(space, space, max_entries=4)
    [second] = navigate(space, space, max_entries=4, marker=first["next_marker"])

    assert first["directories"] == [str(space / f"d{i}") for i in range(4)]
    assert second["directories"] == [str(space / "d4"), str(space / "d5")] and "next_marker" not in second


def test_an_empty_directory_is_processed_with_no_entries(space: Path):
    (space / "empty").mkdir()

    [outcome] = navigate(space, space / "empty")

    assert outcome["status"] == "processed" and outcome["entries"] == [] and outcome["directories"] == []


def test_symlinks_in_a_directory_are_listed_never_followed(space: Path, outside: Path):
    (space / "real").mkdir()
    (space / "to-real").symlink_to(space / "real")
    (space / "escape").symlink_to(outside)

    [outcome] = navigate(space, space)

    kinds = {Path(e["path"]).name: e["type"] for e in outcome["entries"]}
    assert kinds == {"escape": "symlink", "real": "directory", "to-real": "symlink"}
    assert outcome["directories"] == [str(space / "real")]
    assert not any("secret" in e["path"] for e in outcome["entries"])


def test_a_path_through_an_escaping_symlink_is_refused(space: Path, outside: Path):
    (space / "escape").symlink_to(outside)

    through, link = navigate(space, space / "escape" / "secret.txt", space / "escape")

    assert through["status"] == "failed" and through["message"].startswith("refused")
    assert link["status"] == "failed" and link["message"].startswith("refused")
    assert "entries" not in through and "entries" not in link


def test_a_path_outside_the_roots_is_refused(space: Path, outside: Path):
    [outcome] = navigate(space, outside)

    assert outcome["status"] == "failed" and "outside the space roots" in outcome["message"]


def test_a_missing_path_fails_unless_skip_missing(space: Path):
    gone = space / "gone"

    [failed] = navigate(space, gone)
    [skipped] = navigate(space, gone, skip_missing=True)

    assert failed["status"] == "failed" and failed["message"].startswith("missing")
    assert skipped["status"] == "skipped" and skipped["message"].startswith("missing")


def test_one_outcome_per_item_in_order_whatever_each_is(space: Path, outside: Path):
    (space / "dir").mkdir()
    (space / "dir" / "x").write_text("x")
    (space / "file").write_text("f")

    outcomes = navigate(space, space / "dir", space / "missing", space / "file", outside, skip_missing=True)

    assert [(o["path"], o["status"]) for o in outcomes] == [
        (str(space / "dir"), "processed"), (str(space / "missing"), "skipped"),
        (str(space / "file"), "processed"), (str(outside), "failed")]
    assert outcomes[0]["entries"][0]["path"] == str(space / "dir" / "x")
    assert outcomes[2]["entries"][0]["path"] == str(space / "file")


def test_a_stub_is_discovered_as_migrated_with_its_original_size(space: Path, store: MemoryStore):
    big = space / "big.bin"
    big.write_bytes(os.urandom(200_000))
    [migrated] = actions.migrate(context(space, store), [{"path": str(big)}], target="archive")
    assert migrated["status"] == "processed", migrated

    [outcome] = navigate(space, space, store=store)

    [entry] = outcome["entries"]
    assert entry["state"] == HsmState.MIGRATED and entry["size"] == 200_000


def test_a_cancelled_discovery_lists_nothing(space: Path):
    (space / "dir").mkdir()
    ctx = context(space, should_cancel=lambda: True)

    [outcome] = recursive_navigate(ctx, [{"path": str(space / "dir")}])

    assert outcome["status"] == "aborted" and outcome["message"] == "not attempted: cancelled"


@pytest.mark.parametrize("options", [{"max_entries": 0}, {"max_entries": "10"}, {"skip_missing": "yes"},
                                     {"marker": 3}])
def test_bad_options_fail_the_whole_task(space: Path, options: dict):
    with pytest.raises(ValueError):
        navigate(space, space, **options)


def test_entry_types_are_the_drivers_kinds():
    assert {str(kind) for kind in EntryKind} == {"file", "directory", "symlink", "other"}


def test_the_agent_serves_discovery_under_the_contracts_name():
    assert DATA_TASKS[HsmTask.RECURSIVE_NAVIGATE] == ("agent.discovery", "recursive_navigate")
