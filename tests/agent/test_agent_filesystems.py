"""Which filesystem driver a node runs (``agent.filesystems``), and what changes with GPFS: the
inventory report's filesystems, pools and filesets come from the mm commands (fakes here, as no
Storage Scale exists on this machine), and data tasks run on the GPFS driver with the lane."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from agent import actions
from agent.app import Runtime
from agent.config import load_config
from agent.contract import AgentTask, HubTask
from agent.drivers.fs import FolderStore
from agent.drivers.gpfs import GpfsFilesystem
from agent.drivers.posix import PosixFilesystem
from agent.filesystems import driver_kind, open_filesystem
from agent.inventory import Mount
from agent.orders import OrderContext, run_order
from agent.state import StateDir
from tests.agent.gpfs_fixtures import FakeGpfs
from tests.agent.hsm_fixtures import write_random

pytestmark = pytest.mark.smoke


@pytest.fixture
def fake(tmp_path: Path) -> FakeGpfs:
    return FakeGpfs(tmp_path / "bin")


def mounts(root: Path, fstype: str) -> list[Mount]:
    return [Mount("/dev/vda", "/", "ext4"), Mount("gpfs1", str(root), fstype)]


def test_auto_picks_gpfs_only_for_a_root_on_gpfs_with_the_commands_installed(tmp_path: Path, fake: FakeGpfs):
    root = tmp_path / "gpfs1"
    root.mkdir()
    assert driver_kind("auto", [root], bin_dir=fake.bin_dir, mounts=mounts(root, "gpfs")) == "gpfs"
    assert driver_kind("auto", [root], bin_dir=fake.bin_dir, mounts=mounts(root, "ext4")) == "posix"
    assert driver_kind("auto", [root], bin_dir=tmp_path / "nowhere", mounts=mounts(root, "gpfs")) == "posix"
    assert driver_kind("auto", [], bin_dir=fake.bin_dir, mounts=mounts(root, "gpfs")) == "posix"
    assert driver_kind("gpfs", [root], bin_dir=tmp_path / "nowhere") == "gpfs"  # forced: no guessing
    assert driver_kind("posix", [root], bin_dir=fake.bin_dir, mounts=mounts(root, "gpfs")) == "posix"
    with pytest.raises(ValueError, match="filesystem must be one of auto, posix, gpfs"):
        driver_kind("lustre", [root])
    assert type(open_filesystem("gpfs", [root], bin_dir=fake.bin_dir)) is GpfsFilesystem
    assert type(open_filesystem("posix", [root])) is PosixFilesystem


def test_the_config_keys_parse_and_refuse_what_they_do_not_know(tmp_path: Path):
    base = {"AGENT_SITE": "lab"}
    config = load_config(environ=base)
    assert (config.filesystem, str(config.gpfs_bin_dir)) == ("auto", "/usr/lpp/mmfs/bin")
    config = load_config(environ={**base, "AGENT_FILESYSTEM": "gpfs", "AGENT_GPFS_BIN_DIR": str(tmp_path)})
    assert (config.filesystem, config.gpfs_bin_dir) == ("gpfs", tmp_path)
    with pytest.raises(Exception, match="filesystem"):
        load_config(environ={**base, "AGENT_FILESYSTEM": "zfs"})


def order_context(tmp_path: Path, root: Path, sent: list, **extra: str) -> OrderContext:
    config = load_config(environ={"AGENT_SITE": "lab", "AGENT_NODE": "nsd1", "AGENT_STATE_DIR": str(tmp_path / "state"),
                                  "AGENT_ROOTS": str(root), **extra})
    return OrderContext(config=config, state=StateDir(config.state_dir).ensure(),
                        send=lambda name, kwargs: sent.append((name, kwargs)))


def test_a_gpfs_node_reports_its_pools_filesets_and_quotas_from_the_mm_commands(tmp_path: Path, fake: FakeGpfs):
    root = tmp_path / "gpfs1"
    root.mkdir()
    (root / "f").write_bytes(b"x" * 100)
    sent: list = []
    ctx = order_context(tmp_path, root, sent, AGENT_FILESYSTEM="gpfs", AGENT_GPFS_BIN_DIR=str(fake.bin_dir))
    task_id = str(uuid.uuid4())
    run_order(ctx, AgentTask.INVENTORY, {"site": "lab"}, task_id=task_id)
    [report] = [kwargs["report"] for name, kwargs in sent if name == HubTask.INVENTORY]
    assert report["filesystems"] == GpfsFilesystem([root], bin_dir=fake.bin_dir).inventory()["filesystems"]
    assert [(f["name"], f["fstype"]) for f in report["filesystems"]] == [("gpfs1", "gpfs"), ("archive", "gpfs")]
    assert [(p["filesystem"], p["name"], p["is_default"]) for p in report["pools"]] == [
        ("gpfs1", "system", True), ("gpfs1", "data", False), ("archive", "system", True)]
    assert len(report["filesets"]) == 5 and report["filesets"][1]["name"] == "projects"
    assert report["filesets"][1]["block_quota"] > 0
    assert report["counts"]["files_count"] == 1 and report["servers"][0]["name"] == "nsd1"


def test_a_gpfs_node_whose_commands_fail_sends_no_partial_report(tmp_path: Path, fake: FakeGpfs):
    root = tmp_path / "gpfs1"
    root.mkdir()
    fake.respond("mmdf", ["archive", "-Y"], exit=1, stderr="mmdf: File system archive is not mounted.\n")
    sent: list = []
    ctx = order_context(tmp_path, root, sent, AGENT_FILESYSTEM="gpfs", AGENT_GPFS_BIN_DIR=str(fake.bin_dir))
    task_id = str(uuid.uuid4())
    run_order(ctx, AgentTask.INVENTORY, {"site": "lab"}, task_id=task_id)
    assert not [1 for name, _ in sent if name == HubTask.INVENTORY]
    [final] = [kwargs["report"] for name, kwargs in sent if name == HubTask.TASK_RESULT
               and kwargs["report"]["state"] == "FAILURE"]
    assert "mmdf failed with exit code 1" in str(final)


def test_data_tasks_on_a_gpfs_node_run_the_gpfs_driver_and_keep_the_small_file_lane(tmp_path: Path,
                                                                                    fake: FakeGpfs, monkeypatch):
    root, target = tmp_path / "gpfs1", tmp_path / "target"
    root.mkdir()
    target.mkdir()
    files = [write_random(root / f"f{i}.bin", 1000 + i, seed=i) for i in range(5)]
    config = load_config(environ={"AGENT_SITE": "lab", "AGENT_STATE_DIR": str(tmp_path / "state"),
                                  "AGENT_ROOTS": str(root), "AGENT_FILESYSTEM": "gpfs",
                                  "AGENT_GPFS_BIN_DIR": str(fake.bin_dir), "AGENT_SMALL_FILE_WORKERS": "0"})
    ctx = Runtime(config).action_context(task_id=str(uuid.uuid4()), jobid=1)
    assert type(ctx.fs) is GpfsFilesystem
    ctx = actions.ActionContext(roots=ctx.roots, open_target=lambda name: FolderStore(target), filesystem=ctx.fs,
                                lane_workers=0)
    groups: list = []
    real = actions.LanePool.run
    monkeypatch.setattr(actions.LanePool, "run", lambda self, g, **kw: real(self, _noted(g, groups), **kw))
    out = actions.migrate(ctx, [{"path": str(f)} for f in files], target="t")
    assert {o["status"] for o in out} == {"processed"} and groups == [5]
    out = actions.recall(ctx, [{"path": str(f)} for f in files])
    assert {o["status"] for o in out} == {"processed"} and groups == [5, 5]
    assert all(os.path.getsize(f) == 1000 + i for i, f in enumerate(files))


def _noted(groups, seen: list):
    for group in groups:
        seen.append(len(group.rels))
        yield group


def test_the_gpfs_driver_overrides_nothing_of_the_posix_data_path():
    """``actions.LANE_DRIVERS`` lets the lane work for GPFS because its data path is POSIX's."""
    own = set(vars(GpfsFilesystem)) & {name for klass in PosixFilesystem.__mro__[:-1] for name in vars(klass)}
    assert own <= {"__init__", "__doc__", "__module__", "__firstlineno__", "__static_attributes__"}, own
