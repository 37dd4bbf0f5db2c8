"""Recall of small stubs in the lane's processes (``agent.lane.run_recall_group``): the same
outcome, bytes and records as the general path, whatever the lane hands back, and nothing
lost when a worker dies."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from agent import actions, lane
from agent.drivers.fs import FolderStore
from agent.hsm.state import HsmState, read_record
from tests.agent.hsm_fixtures import manifest, write_random

CHUNK = 64 * 1024


@pytest.fixture
def pool(monkeypatch):
    """A lane pool of two processes, made here and closed after the test."""
    made = lane.LanePool(2)
    monkeypatch.setattr(actions, "shared_pool", lambda workers: made)
    yield made
    made.close()


def ctx(space: Path, targets: dict[str, Path], lane_workers: int | None = 2) -> actions.ActionContext:
    return actions.ActionContext(roots=[space], open_target=lambda name: FolderStore(targets[name]),
                                 chunk_size=CHUNK, lane_workers=lane_workers)


def tree(space: Path, count: int, prefix: str = "") -> list[Path]:
    return [write_random(space / f"d{i % 3}" / f"{prefix}f {i}.bin", (i * 1931) % CHUNK, seed=i)
            for i in range(count)]


def items(paths: list[Path]) -> list[dict]:
    return [{"path": str(p)} for p in paths]


def statuses(out: list[dict]) -> Counter:
    return Counter(o["status"] for o in out)


def stubbed(space: Path, targets: dict[str, Path], name: str, files: list[Path]) -> None:
    out = actions.migrate(ctx(space, targets, lane_workers=None), items(files), target=name)
    assert statuses(out) == {"processed": len(files)}, out


def test_the_lane_recalls_exactly_as_the_general_path_does(tmp_path, pool):
    results = {}
    for how, workers in (("lane", 2), ("general", None)):
        space, target = tmp_path / how / "space", tmp_path / how / "target"
        target.mkdir(parents=True)
        files = tree(space, 300)
        before = manifest(space)
        stubbed(space, {"t": target}, "t", files)
        out = actions.recall(ctx(space, {"t": target}, lane_workers=workers), items(files))
        assert statuses(out) == {"processed": len(files)}
        assert manifest(space) == before  # bytes, mode and mtime
        assert all(read_record(f).state == HsmState.HYDRATED for f in files)
        results[how] = [(o["status"], o["message"], o["key"], o["path"].split("/space/")[1]) for o in out]
    assert results["lane"] == results["general"]
    assert (pool.completed, pool.handed_back) == (2, 0)  # 256 + 44 files, both groups in the lane


def test_what_the_lane_cannot_take_goes_the_general_way(tmp_path, pool):
    space = tmp_path / "space"
    targets = {"t": tmp_path / "t", "u": tmp_path / "u"}
    for folder in targets.values():
        folder.mkdir()
    on_t, on_u = tree(space, 20, "t-"), tree(space, 20, "u-")
    resident = tree(space, 5, "resident-")
    linked = write_random(space / "linked.bin", 5000, seed=99)
    os.link(linked, space / "second-link.bin")
    before = manifest(space)
    stubbed(space, targets, "t", [*on_t, linked])
    stubbed(space, targets, "u", on_u)

    everything = [*on_u, *on_t, *resident, linked]  # the group's first record names u
    out = actions.recall(ctx(space, targets), items(everything))
    by_path = {o["path"]: o for o in out}
    assert all(by_path[str(f)]["status"] == "processed" for f in [*on_t, *on_u, linked])
    assert all(by_path[str(f)]["status"] == "skipped" for f in resident)
    assert manifest(space) == before
    assert (pool.completed, pool.handed_back) == (1, 0)


def test_the_lane_is_not_used_without_worker_processes(tmp_path, monkeypatch):
    space, target = tmp_path / "space", tmp_path / "target"
    target.mkdir()
    files = tree(space, 10)
    stubbed(space, {"t": target}, "t", files)
    made = lane.LanePool(0)
    monkeypatch.setattr(actions, "shared_pool", lambda workers: made)
    out = actions.recall(ctx(space, {"t": target}, lane_workers=0), items(files))
    assert statuses(out) == {"processed": 10}
    assert made.completed == 0  # the batch's threads did it: in one thread the lane would be slower


def test_a_dead_worker_hands_its_recall_group_back(tmp_path, pool, monkeypatch):
    space, target = tmp_path / "space", tmp_path / "target"
    target.mkdir()
    files = tree(space, 40)
    before = manifest(space)
    stubbed(space, {"t": target}, "t", files)
    monkeypatch.setattr(lane, "run_recall_group", _recall_half_then_die)
    out = actions.recall(ctx(space, {"t": target}), items(files))
    assert pool.handed_back == 1
    assert set(statuses(out)) <= {"processed", "skipped"} and statuses(out)["processed"] >= 20, out
    assert manifest(space) == before
    assert all(read_record(f).state == HsmState.HYDRATED for f in files)


def _recall_half_then_die(group: lane.RecallGroup) -> list:
    """The worker recalls half its group for real, then is killed (SIGKILL) mid-group."""
    half = lane.RecallGroup(group.settings, group.rels[: len(group.rels) // 2])
    lane.run_recall_group(half)  # in the worker the module's own function: the patch is the parent's
    os.kill(os.getpid(), signal.SIGKILL)
    return []
