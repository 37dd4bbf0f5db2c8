"""The agent's orders, called directly: real directories, a real folder target, real encryption.

Each test plays the hub: it builds the order as ``sites.services`` does (credentials sealed with
the site's agent key), runs it through ``run_order`` and reads the reports the agent would send
to the hub's queue (collected instead of published; ``test_agent_daemon`` covers the broker).
Everything is ``smoke`` but the S3 test, which needs ``rclone serve s3`` (``emulators``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from agent.config import load_config
from agent.contract import AgentTask, HubTask
from agent.drivers.fs import FolderStore
from agent.hsm.state import HsmRecord, HsmState, write_record
from agent.orders import OrderContext, run_order
from agent.state import StateDir, TargetNotConfigured
from tests.agent import servers
from tests.agent.conftest import unique_name
from tests.agent.s3_helpers import new_store, s3_bucket

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


class Hub:
    """The reports the agent sends, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, kwargs: dict[str, Any]) -> None:
        json.dumps(kwargs)  # what the broker would carry: JSON only
        self.sent.append((name, kwargs))

    def results(self, task_id: str) -> list[dict[str, Any]]:
        return [kw["report"] for name, kw in self.sent if name == HubTask.TASK_RESULT
                and kw["report"]["task_id"] == task_id]

    def final(self, task_id: str) -> dict[str, Any]:
        reports = self.results(task_id)
        assert reports, f"no report for {task_id}"
        return reports[-1]

    def text(self) -> str:
        return json.dumps(self.sent)


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    data = tmp_path / "data"
    data.mkdir()
    return [data]


@pytest.fixture
def hub() -> Hub:
    return Hub()


def make_ctx(tmp_path: Path, roots: list[Path], key: str | None, hub: Hub, **extra: Any) -> OrderContext:
    environ = {"AGENT_SITE": "lab", "AGENT_NODE": "nsd1", "AGENT_STATE_DIR": str(tmp_path / "state"),
               "AGENT_ROOTS": os.pathsep.join(map(str, roots)), "AGENT_INVENTORY_BUDGET": "5", **extra}
    if key:
        environ["AGENT_KEY"] = key
    config = load_config(environ=environ)
    state = StateDir(config.state_dir, agent_key=key).ensure()
    return OrderContext(config=config, state=state, send=hub)


@pytest.fixture
def ctx(tmp_path: Path, roots: list[Path], key: str, hub: Hub) -> OrderContext:
    return make_ctx(tmp_path, roots, key, hub)


def order(ctx: OrderContext, name: str, payload: Any, task_id: str | None = None) -> dict[str, Any]:
    task_id = task_id or str(uuid.uuid4())
    run_order(ctx, name, payload, task_id=task_id)
    hub: Hub = ctx.send  # type: ignore[assignment]
    return hub.final(task_id)


def folder_target(tmp_path: Path, key: str, *, endpoint: str = "fs-7-archive", secret: str = SECRET,
                  bucket_id: int = 3) -> dict[str, Any]:
    """A ``TargetOrder`` for a folder target, credentials sealed as the hub seals them."""
    folder = tmp_path / "remote"
    folder.mkdir(exist_ok=True)
    credentials = Fernet(key.encode()).encrypt(json.dumps({"access_key_id": "AKIDEXAMPLE",
                                                           "secret_access_key": secret}).encode()).decode()
    return {
        "endpoint_name": endpoint,
        "target": {"id": 7, "name": "archive", "space": {"id": 1, "name": "projects", "mountpoint": "/x"}},
        "bucket": {"id": bucket_id, "name": "archive", "storage_type": "fs",
                   "migration_target_folder": str(folder), "advanced_settings": {"fsync": False}},
        "credentials_ref": {"bucket": bucket_id},
        "credentials": credentials,
    }


# --- reporting protocol ----------------------------------------------------------------------------

@pytest.mark.smoke
def test_an_order_reports_started_then_success(ctx: OrderContext, hub: Hub, roots: list[Path]):
    task_id = str(uuid.uuid4())
    run_order(ctx, AgentTask.CREATE_SPACE, {"space": "p", "mountpoint": f"{roots[0]}/p", "size": None,
                                            "pool": None, "permission_mode": "chmodAndSetAcl"}, task_id=task_id)
    states = [report["state"] for report in hub.results(task_id)]
    assert states == ["STARTED", "SUCCESS"]
    assert all(report["at"].endswith("+00:00") for report in hub.results(task_id))


@pytest.mark.smoke
def test_an_order_for_another_site_fails(ctx: OrderContext):
    report = order(ctx, AgentTask.REPORT_SETTINGS, {"site": "elsewhere"})
    assert report["state"] == "FAILURE"
    assert "elsewhere" in report["error"] and "lab" in report["error"]


@pytest.mark.smoke
def test_a_malformed_order_fails_instead_of_crashing(ctx: OrderContext):
    assert order(ctx, AgentTask.CREATE_SPACE, ["not", "an", "object"])["state"] == "FAILURE"
    assert order(ctx, AgentTask.APPLY_SHARES, {"space_uuid": "x-1"})["state"] == "FAILURE"


@pytest.mark.smoke
def test_sync_accounts_is_answered_not_left_pending(ctx: OrderContext):
    report = order(ctx, AgentTask.SYNC_ACCOUNTS, {"site": "lab"})
    assert report["state"] == "FAILURE" and "accounts" in report["error"]


# --- spaces ----------------------------------------------------------------------------------------

@pytest.mark.smoke
def test_create_space_makes_the_directory_and_is_idempotent(ctx: OrderContext, roots: list[Path]):
    mountpoint = roots[0] / "projects" / "alpha"
    payload = {"space": "alpha", "mountpoint": str(mountpoint), "size": 10**12, "pool": "fast",
               "permission_mode": "chmodAndSetAcl"}
    first = order(ctx, AgentTask.CREATE_SPACE, payload)
    assert first["state"] == "SUCCESS", first
    assert mountpoint.is_dir()
    assert first["results"]["created"] is True and first["results"]["mode"] == "0755"
    assert any("quota" in note for note in first["results"]["notes"])
    (mountpoint / "keep.txt").write_text("user data")

    again = order(ctx, AgentTask.CREATE_SPACE, payload)  # a new order (new task id) for the same space
    assert again["state"] == "SUCCESS" and again["results"]["created"] is False
    assert (mountpoint / "keep.txt").read_text() == "user data"
    assert [record["mountpoint"] for record in ctx.state.spaces()] == [str(mountpoint)]


@pytest.mark.smoke
def test_create_space_applies_an_explicit_octal_mode(ctx: OrderContext, roots: list[Path]):
    mountpoint = roots[0] / "shared"
    report = order(ctx, AgentTask.CREATE_SPACE, {"space": "s", "mountpoint": str(mountpoint), "size": None,
                                                 "pool": None, "permission_mode": "2770"})
    assert report["state"] == "SUCCESS"
    assert stat.S_IMODE(mountpoint.stat().st_mode) == 0o2770


@pytest.mark.parametrize("where", ["/etc/hub-agent-test-space", "{root}/../escaped", "relative/path", ""])
@pytest.mark.smoke
def test_create_space_refuses_paths_outside_the_roots(ctx: OrderContext, roots: list[Path], where: str):
    mountpoint = where.format(root=roots[0])
    report = order(ctx, AgentTask.CREATE_SPACE, {"space": "x", "mountpoint": mountpoint, "size": None,
                                                 "pool": None, "permission_mode": "chmodOnly"})
    assert report["state"] == "FAILURE"
    assert not Path("/etc/hub-agent-test-space").exists()
    assert not (roots[0].parent / "escaped").exists()


@pytest.mark.smoke
def test_create_space_never_follows_a_symlink_out_of_the_root(ctx: OrderContext, roots: list[Path],
                                                              tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (roots[0] / "link").symlink_to(outside)
    report = order(ctx, AgentTask.CREATE_SPACE, {"space": "x", "mountpoint": f"{roots[0]}/link/space",
                                                 "size": None, "pool": None, "permission_mode": "chmodOnly"})
    assert report["state"] == "FAILURE" and "symlink" in report["error"]
    assert list(outside.iterdir()) == []


@pytest.mark.smoke
def test_create_space_without_roots_is_refused(tmp_path: Path, key: str, hub: Hub):
    ctx = make_ctx(tmp_path, [], key, hub)
    report = order(ctx, AgentTask.CREATE_SPACE, {"space": "x", "mountpoint": str(tmp_path / "x"), "size": None,
                                                 "pool": None, "permission_mode": "chmodOnly"})
    assert report["state"] == "FAILURE" and "no roots" in report["error"]
    assert not (tmp_path / "x").exists()


# --- settings --------------------------------------------------------------------------------------

@pytest.mark.smoke
def test_apply_settings_stores_them_and_applies_the_log_level(ctx: OrderContext):
    root = logging.getLogger()
    before = root.level
    try:
        report = order(ctx, AgentTask.APPLY_SETTINGS, {"site": "lab", "settings": {
            "agent:log_level": "warning", "agent:heartbeat_interval": 7, "samba:realm": "EXAMPLE.ORG"}})
        assert report["state"] == "SUCCESS", report
        assert root.level == logging.WARNING
        assert report["results"]["effective"] == {"agent:log_level": "WARNING", "agent:heartbeat_interval": 7.0}
        assert ctx.state.settings()["settings"]["samba:realm"] == "EXAMPLE.ORG"

        shown = order(ctx, AgentTask.REPORT_SETTINGS, {"site": "lab"})
        assert shown["results"]["settings"]["agent:heartbeat_interval"] == 7
        assert shown["results"]["effective"]["agent:log_level"] == "WARNING"
    finally:
        root.setLevel(before)


@pytest.mark.smoke
def test_settings_the_agent_cannot_use_are_stored_but_reported_ignored(ctx: OrderContext):
    report = order(ctx, AgentTask.APPLY_SETTINGS, {"site": "lab", "settings": {
        "agent:log_level": "LOUD", "agent:heartbeat_interval": "often"}})
    assert report["state"] == "SUCCESS"
    assert set(report["results"]["ignored"]) == {"agent:log_level", "agent:heartbeat_interval"}
    assert report["results"]["effective"] == {"agent:log_level": "INFO", "agent:heartbeat_interval": 30.0}


@pytest.mark.smoke
def test_a_redelivered_settings_push_does_not_undo_a_newer_one(ctx: OrderContext):
    old_id = str(uuid.uuid4())
    old = order(ctx, AgentTask.APPLY_SETTINGS, {"site": "lab", "settings": {"samba:realm": "OLD"}}, old_id)
    order(ctx, AgentTask.APPLY_SETTINGS, {"site": "lab", "settings": {"samba:realm": "NEW"}})
    again = order(ctx, AgentTask.APPLY_SETTINGS, {"site": "lab", "settings": {"samba:realm": "OLD"}}, old_id)
    assert again["results"] == old["results"]
    assert ctx.state.settings()["settings"] == {"samba:realm": "NEW"}
    hub: Hub = ctx.send  # type: ignore[assignment]
    assert [r["state"] for r in hub.results(old_id)] == ["STARTED", "SUCCESS", "SUCCESS"]


# --- shares ----------------------------------------------------------------------------------------

@pytest.mark.smoke
def test_apply_shares_records_the_set_and_an_empty_set_withdraws_it(ctx: OrderContext):
    space_uuid = str(uuid.uuid4())
    payload = {"space": "alpha", "space_uuid": space_uuid, "mountpoint": "/data/alpha",
               "nfs": [{"uuid": str(uuid.uuid4()), "name": "alpha", "path": "/data/alpha", "fsid": 1,
                        "clients": [{"hosts": "10.0.0.0/8", "options": "rw,sync"}]}],
               "smb": []}
    report = order(ctx, AgentTask.APPLY_SHARES, payload)
    assert report["state"] == "SUCCESS" and report["results"]["nfs"] == 1
    assert report["results"]["rendered"] is False
    assert ctx.state.shares(space_uuid)["nfs"][0]["clients"][0]["options"] == "rw,sync"

    withdrawn = order(ctx, AgentTask.APPLY_SHARES, {**payload, "nfs": [], "smb": []})
    assert withdrawn["state"] == "SUCCESS" and withdrawn["results"]["withdrawn"] is True
    assert ctx.state.shares(space_uuid) is None


@pytest.mark.smoke
def test_apply_shares_refuses_a_space_uuid_that_is_not_one(ctx: OrderContext):
    report = order(ctx, AgentTask.APPLY_SHARES, {"space": "x", "space_uuid": "../../etc/passwd", "mountpoint": "/x",
                                                 "nfs": [{"name": "x"}], "smb": []})
    assert report["state"] == "FAILURE"


# --- targets ---------------------------------------------------------------------------------------

@pytest.mark.smoke
def test_configure_target_keeps_credentials_encrypted_at_rest(ctx: OrderContext, tmp_path: Path, key: str,
                                                              hub: Hub):
    report = order(ctx, AgentTask.CONFIGURE_TARGET, folder_target(tmp_path, key))
    assert report["state"] == "SUCCESS", report
    assert report["results"] == {"endpoint_name": "fs-7-archive", "storage_type": "fs", "credentials": "stored"}

    files = [path for path in (tmp_path / "state").rglob("*") if path.is_file()]
    target_files = [path for path in files if path.suffix == ".target"]
    assert len(target_files) == 1
    assert stat.S_IMODE(target_files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    for path in files:  # nothing on disk holds the secret, nor even the target's names, in clear
        raw = path.read_bytes()
        assert SECRET.encode() not in raw and b"AKIDEXAMPLE" not in raw, path
        if path in target_files:
            assert b"fs-7-archive" not in raw and str(tmp_path / "remote").encode() not in raw
    assert SECRET not in hub.text()

    record = ctx.state.load_target("fs-7-archive")
    assert record["credentials"] == {"access_key_id": "AKIDEXAMPLE", "secret_access_key": SECRET}
    assert record["bucket"]["migration_target_folder"] == str(tmp_path / "remote")


@pytest.mark.smoke
def test_the_target_record_is_useless_without_the_agent_key(ctx: OrderContext, tmp_path: Path, key: str):
    order(ctx, AgentTask.CONFIGURE_TARGET, folder_target(tmp_path, key))
    other = StateDir(ctx.state.root, agent_key=Fernet.generate_key().decode())
    with pytest.raises(Exception, match="cannot be decrypted"):
        other.load_target("fs-7-archive")


@pytest.mark.smoke
def test_after_a_key_change_a_reconfiguration_replaces_the_unreadable_record(tmp_path: Path, roots: list[Path],
                                                                           key: str, hub: Hub):
    order(make_ctx(tmp_path, roots, key, hub), AgentTask.CONFIGURE_TARGET, folder_target(tmp_path, key))
    new_key = Fernet.generate_key().decode()
    ctx = make_ctx(tmp_path, roots, new_key, hub)
    listed = order(ctx, AgentTask.LIST_TARGET, {"endpoint_name": "fs-7-archive", "path": "", "max_items": 5,
                                                "marker": ""})
    assert listed["state"] == "FAILURE" and "cannot be decrypted" in listed["error"]
    payload = folder_target(tmp_path, new_key)
    del payload["credentials"]
    report = order(ctx, AgentTask.CONFIGURE_TARGET, payload)
    assert report["state"] == "SUCCESS" and report["results"]["credentials"] == "none"
    assert ctx.state.load_target("fs-7-archive")["bucket"]["name"] == "archive"


@pytest.mark.smoke
def test_credentials_sealed_with_another_key_are_refused(ctx: OrderContext, tmp_path: Path):
    payload = folder_target(tmp_path, Fernet.generate_key().decode())
    report = order(ctx, AgentTask.CONFIGURE_TARGET, payload)
    assert report["state"] == "FAILURE" and "cannot be decrypted" in report["error"]
    assert ctx.state.load_target("fs-7-archive") is None


@pytest.mark.smoke
def test_configure_target_without_an_agent_key_fails_clearly(tmp_path: Path, roots: list[Path], key: str,
                                                             hub: Hub):
    ctx = make_ctx(tmp_path, roots, None, hub)
    report = order(ctx, AgentTask.CONFIGURE_TARGET, folder_target(tmp_path, key))
    assert report["state"] == "FAILURE" and "agent key" in report["error"]


@pytest.mark.smoke
def test_a_reconfiguration_without_credentials_keeps_the_stored_ones(ctx: OrderContext, tmp_path: Path,
                                                                     key: str):
    order(ctx, AgentTask.CONFIGURE_TARGET, folder_target(tmp_path, key))
    payload = folder_target(tmp_path, key)
    del payload["credentials"]
    payload["target"]["delete_on_recall"] = True
    report = order(ctx, AgentTask.CONFIGURE_TARGET, payload)
    assert report["results"]["credentials"] == "kept"
    record = ctx.state.load_target("fs-7-archive")
    assert record["credentials"]["secret_access_key"] == SECRET
    assert record["target"]["delete_on_recall"] is True

    moved = folder_target(tmp_path, key, bucket_id=4)  # another bucket: the old secret must not follow
    del moved["credentials"]
    assert order(ctx, AgentTask.CONFIGURE_TARGET, moved)["results"]["credentials"] == "none"
    assert ctx.state.load_target("fs-7-archive")["credentials"] == {}


@pytest.mark.smoke
def test_a_target_with_unusable_bucket_settings_is_refused(ctx: OrderContext, tmp_path: Path, key: str):
    payload = folder_target(tmp_path, key)
    payload["bucket"]["migration_target_folder"] = "relative/folder"
    report = order(ctx, AgentTask.CONFIGURE_TARGET, payload)
    assert report["state"] == "FAILURE" and "migration_target_folder" in report["error"]
    assert ctx.state.load_target("fs-7-archive") is None


@pytest.mark.smoke
def test_remove_target_forgets_it_and_is_idempotent(ctx: OrderContext, tmp_path: Path, key: str):
    payload = folder_target(tmp_path, key)
    order(ctx, AgentTask.CONFIGURE_TARGET, payload)
    first = order(ctx, AgentTask.REMOVE_TARGET, payload)
    assert first["state"] == "SUCCESS" and first["results"]["removed"] is True
    again = order(ctx, AgentTask.REMOVE_TARGET, payload)
    assert again["state"] == "SUCCESS" and again["results"]["removed"] is False
    with pytest.raises(TargetNotConfigured):
        ctx.state.open_target("fs-7-archive")


@pytest.mark.smoke
def test_a_redelivered_configure_does_not_bring_back_a_removed_target(ctx: OrderContext, tmp_path: Path,
                                                                      key: str):
    payload = folder_target(tmp_path, key)
    configure_id = str(uuid.uuid4())
    first = order(ctx, AgentTask.CONFIGURE_TARGET, payload, configure_id)
    order(ctx, AgentTask.REMOVE_TARGET, payload)
    again = order(ctx, AgentTask.CONFIGURE_TARGET, payload, configure_id)  # the broker delivers it again
    assert again["state"] == "SUCCESS" and again["results"] == first["results"]
    assert ctx.state.load_target("fs-7-archive") is None


@pytest.mark.smoke
def test_open_target_builds_the_store_the_data_tasks_use(ctx: OrderContext, tmp_path: Path, key: str):
    order(ctx, AgentTask.CONFIGURE_TARGET, folder_target(tmp_path, key))
    with ctx.state.open_target("fs-7-archive") as store:
        assert isinstance(store, FolderStore)
        store.put("a/b.txt", io.BytesIO(b"remote bytes"), size=12)
    assert (tmp_path / "remote" / "a" / "b.txt").read_bytes() == b"remote bytes"


# --- remote listing --------------------------------------------------------------------------------

@pytest.fixture
def listed(ctx: OrderContext, tmp_path: Path, key: str) -> OrderContext:
    """A configured folder target holding a small tree."""
    order(ctx, AgentTask.CONFIGURE_TARGET, folder_target(tmp_path, key))
    store = FolderStore(str(tmp_path / "remote"), fsync=False)
    for name in ["top.txt", "aws/cats1.jpg", "aws/cats2.jpg", "aws/dogs.jpg", "aws/catsdir/x.jpg",
                 "aws/deep/y.bin", *[f"many/f{i:03}" for i in range(25)]]:
        data = name.encode() * 3
        store.put(name, io.BytesIO(data), size=len(data))
    return ctx


def listing(ctx: OrderContext, **query: Any) -> dict[str, Any]:
    report = order(ctx, AgentTask.LIST_TARGET, {"endpoint_name": "fs-7-archive", "path": "", "max_items": 100,
                                                "marker": "", **query})
    assert report["state"] == "SUCCESS", report
    return report["results"]


@pytest.mark.smoke
def test_list_target_shows_one_level_with_directories(listed: OrderContext):
    top = listing(listed)
    assert [d["path"] for d in top["directories"]] == ["aws/", "many/"]
    assert [d["name"] for d in top["directories"]] == ["aws", "many"]
    assert top["files"] == [{"name": "top.txt", "path": "top.txt", "size": 21, "type": "file"}]
    assert top["next_marker"] == "" and top["summary"]["truncated"] is False

    aws = listing(listed, path="aws/")
    assert [f["name"] for f in aws["files"]] == ["cats1.jpg", "cats2.jpg", "dogs.jpg"]
    assert [d["path"] for d in aws["directories"]] == ["aws/catsdir/", "aws/deep/"]


@pytest.mark.smoke
def test_list_target_filters_one_level_with_a_glob(listed: OrderContext):
    cats = listing(listed, path="aws/cats*.jpg")
    assert [f["path"] for f in cats["files"]] == ["aws/cats1.jpg", "aws/cats2.jpg"]
    assert cats["directories"] == []
    assert [d["path"] for d in listing(listed, path="aws/cats*")["directories"]] == ["aws/catsdir/"]


@pytest.mark.smoke
def test_list_target_pages_with_markers_without_gaps_or_repeats(listed: OrderContext):
    seen: list[str] = []
    marker, pages = "", 0
    while True:
        page = listing(listed, path="many/", max_items=7, marker=marker)
        seen += [f["path"] for f in page["files"]]
        pages += 1
        assert page["marker"] == marker
        if not page["next_marker"]:
            break
        assert len(page["files"]) == 7
        marker = page["next_marker"]
    assert seen == [f"many/f{i:03}" for i in range(25)]
    assert pages == 4


@pytest.mark.smoke
def test_list_target_pages_a_glob_listing_too(listed: OrderContext):
    first = listing(listed, path="aws/*.jpg", max_items=2)
    assert [f["path"] for f in first["files"]] == ["aws/cats1.jpg", "aws/cats2.jpg"]
    rest = listing(listed, path="aws/*.jpg", max_items=2, marker=first["next_marker"])
    assert [f["path"] for f in rest["files"]] == ["aws/dogs.jpg"] and rest["next_marker"] == ""


@pytest.mark.smoke
def test_list_target_of_an_unknown_target_fails(ctx: OrderContext):
    report = order(ctx, AgentTask.LIST_TARGET, {"endpoint_name": "s3-99-nope", "path": "", "max_items": 10,
                                                "marker": ""})
    assert report["state"] == "FAILURE" and "not configured" in report["error"]


@pytest.mark.parametrize("query", [{"max_items": 0}, {"max_items": 5000}, {"path": "a/../b"}])
@pytest.mark.smoke
def test_list_target_refuses_bad_queries(listed: OrderContext, query: dict[str, Any]):
    report = order(listed, AgentTask.LIST_TARGET, {"endpoint_name": "fs-7-archive", "path": "", "max_items": 10,
                                                   "marker": "", **query})
    assert report["state"] == "FAILURE"


# --- inventory -------------------------------------------------------------------------------------

def _xattrs_work(path: Path) -> bool:
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


@pytest.mark.smoke
def test_inventory_answers_the_refresh_order_with_the_report(ctx: OrderContext, hub: Hub, roots: list[Path]):
    root = roots[0]
    order(ctx, AgentTask.CREATE_SPACE, {"space": "p", "mountpoint": str(root / "p"), "size": None, "pool": None,
                                        "permission_mode": "chmodOnly"})
    (root / "p" / "a.txt").write_bytes(b"x" * 10_000)
    (root / "p" / "sub").mkdir()
    (root / "p" / "sub" / "b.txt").write_bytes(b"y")
    (root / "loose.txt").write_bytes(b"z")
    stubbed = 0
    if _xattrs_work(root):
        stub = root / "p" / "stub.bin"
        stub.write_bytes(b"")
        fd = os.open(stub, os.O_RDONLY)
        try:
            write_record(fd, HsmRecord(state=HsmState.MIGRATED, target="fs-7-archive", key="p/stub.bin",
                                       sha256="0" * 64, size=0, mtime_ns=0, inode=os.fstat(fd).st_ino))
        finally:
            os.close(fd)
        stubbed = 1

    task_id = str(uuid.uuid4())
    assert run_order(ctx, AgentTask.INVENTORY, {"site": "lab"}, task_id=task_id) is None
    assert [r["state"] for r in hub.results(task_id)] == ["STARTED"]  # the report itself is the answer
    [report] = [kw["report"] for name, kw in hub.sent if name == HubTask.INVENTORY]
    assert report["task_id"] == task_id and report["site"] == "lab" and report["node"] == "nsd1"
    [fs] = report["filesystems"]
    assert str(root).startswith(fs["mountpoint"].rstrip("/") + "/") or str(root) == fs["mountpoint"]
    assert fs["capacity"] > 0 and fs["capacity"] >= fs["used_space"] and fs["free_space"] >= 0
    [pool] = report["pools"]
    assert pool["filesystem"] == fs["name"] and pool["is_default"] is True and pool["capacity"] == fs["capacity"]
    assert report["filesets"] == []
    assert report["servers"][0]["name"] == "nsd1"
    assert {"lo"} <= {iface["name"] for iface in report["servers"][0]["list_of_interfaces"]}
    assert report["counts"] == {"files_count": 3 + stubbed, "directories_count": 2,
                                "files_hydrated_count": 0, "files_stubbed_count": stubbed}
    [usage] = report["spaces"]
    assert usage["mountpoint"] == str(root / "p") and usage["used_files"] == 3 + stubbed + 1
    assert usage["used_space"] >= 10_000


@pytest.mark.smoke
def test_inventory_omits_counts_when_the_walk_has_no_time(tmp_path: Path, roots: list[Path], key: str, hub: Hub):
    ctx = make_ctx(tmp_path, roots, key, hub, AGENT_INVENTORY_BUDGET="0")
    (roots[0] / "f").write_bytes(b"1")
    run_order(ctx, AgentTask.INVENTORY, {"site": "lab"}, task_id=str(uuid.uuid4()))
    [report] = [kw["report"] for name, kw in hub.sent if name == HubTask.INVENTORY]
    assert "counts" not in report and "spaces" not in report
    assert len(report["pools"]) == 1


# --- credentials reach the driver: an S3 target on a server that checks signatures ------------------

@pytest.mark.emulators
def test_sealed_s3_credentials_let_the_agent_list_a_bucket_that_checks_signatures(
        ctx: OrderContext, key: str, hub: Hub, rclone_server: servers.Server):
    name = unique_name()
    seed = new_store(rclone_server, name)
    seed.put("reports/q1.csv", io.BytesIO(b"a,b\n"), size=4)
    bucket = s3_bucket(rclone_server, name)
    secrets = {field: bucket.pop(field) for field in ("access_key_id", "secret_access_key")}
    payload = {"endpoint_name": "s3-5-reports", "target": {"id": 5, "name": "reports"}, "bucket": bucket,
               "credentials_ref": {"bucket": 5},
               "credentials": Fernet(key.encode()).encrypt(json.dumps(secrets).encode()).decode()}
    assert order(ctx, AgentTask.CONFIGURE_TARGET, payload)["state"] == "SUCCESS"
    query = {"endpoint_name": "s3-5-reports", "path": "reports/", "max_items": 10, "marker": ""}
    page = order(ctx, AgentTask.LIST_TARGET, query)
    assert page["state"] == "SUCCESS", page
    assert page["results"]["files"] == [{"name": "q1.csv", "path": "reports/q1.csv", "size": 4, "type": "file"}]

    wrong = {**secrets, "secret_access_key": "not-" + servers.S3_SECRET_KEY}
    payload["credentials"] = Fernet(key.encode()).encrypt(json.dumps(wrong).encode()).decode()
    assert order(ctx, AgentTask.CONFIGURE_TARGET, payload)["state"] == "SUCCESS"
    refused = order(ctx, AgentTask.LIST_TARGET, query)
    assert refused["state"] == "FAILURE"
    assert servers.S3_SECRET_KEY not in hub.text()
