"""Data safety of the batch tasks (``agent.actions``) on every backend, with real bytes.

For each backend (memory, a folder target, S3 on moto and on ``rclone serve s3``, Azure on
Azurite, GCS on fake-gcs-server) a tree of mixed files - empty, 1 byte, sparse, 100 MiB, on and
around the chunk boundary, unicode names, spaces, hard links, symlinks, odd modes and owners - is
migrated, recalled, and compared with a SHA-256 manifest (content, size, mode, uid, gid, mtime);
then reverse-stubbed into a second root from the objects alone and recalled there.

Then real crashes: an agent process running ``migrate`` (and later ``recall``) over such a tree
against the folder target and S3 on rclone is SIGKILLed mid-transfer, once some bytes of the
large file have moved. Before anything is re-run, every file is checked: a file its record calls
resident holds exactly its original bytes, a file it calls migrated has a remote copy that hashes
to them, and every object the store shows is complete. A new process then re-runs the task,
which completes, with no duplicate objects, and the final manifest equals the original.

This module is also the agent process of those tests: ``python -m
tests.agent.test_data_safety_backends <spec.json>`` runs one action from a JSON spec and prints
its progress (one JSON line per report) and its outcomes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent import actions
from agent.actions import ActionContext, BatchProgress
from agent.drivers.base import ObjectStore
from agent.drivers.memory import MemoryStore
from agent.drivers.registry import open_store
from agent.hsm.metadata import parse_metadata
from agent.hsm.state import HsmState, Pending, read_record
from agent.transfer import RetryPolicy
from tests.agent import servers
from tests.agent.conftest import unique_name
from tests.agent.hsm_fixtures import MiB, manifest, sha256_file, write_file, write_random

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 4 * MiB  # the agent's chunk: files up to this size go up whole, concurrently
BIG = 100 * MiB
SPARSE = 32 * MiB
MTIME = 1_500_000_000_987_654_321
TARGET = "target"


# --- backends ------------------------------------------------------------------------------------

@dataclass
class Backend:
    name: str
    open_target: Callable[[str], ObjectStore]
    bucket: dict[str, Any] | None = None  # what an agent in another process needs to open it


#: Sizes from which a backend's driver uploads in several parts, getting a composite checksum.
MULTIPART_FROM = {"s3-moto": 8 * MiB, "s3-rclone": 8 * MiB}


def _s3(server: servers.Server) -> dict[str, Any]:
    from tests.agent.s3_helpers import admin_client, s3_bucket

    name = unique_name()
    admin_client(server).create_bucket(Bucket=name)
    return s3_bucket(server, name)


def _azure(server: servers.Server) -> dict[str, Any]:
    bucket = {"storage_type": "azure", "name": "test", "storage_account": servers.AZURITE_ACCOUNT,
              "container": unique_name(), "access_key": servers.AZURITE_KEY, "endpoint": server.host,
              "port": server.port, "scheme": "http", "ssl_verify": True,
              "advanced_settings": {"block_size": 4 * MiB, "max_concurrency": 2, "max_attempts": 2}}
    with open_store(bucket) as store:
        store._container.create_container()  # type: ignore[attr-defined]
    return bucket


def _gcs(server: servers.Server) -> dict[str, Any]:
    bucket = {"storage_type": "gcs", "name": unique_name(), "endpoint": server.host, "port": server.port,
              "scheme": "http", "ssl_verify": True, "credentials_json": "", "credentials_file": "",
              "advanced_settings": {"anonymous": True, "project": "hub-test", "chunk_size": 4 * MiB,
                                    "connect_timeout": 5, "retry_timeout": 0}}
    with open_store(bucket) as store:
        store._client.create_bucket(bucket["name"])  # type: ignore[attr-defined]
    return bucket


def _folder(tmp_path: Path) -> dict[str, Any]:
    return {"storage_type": "fs", "migration_target_folder": str(tmp_path / "target-folder"),
            "advanced_settings": {"create_folder": True}}


def make_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The backend ``name``, starting its server (a session fixture) only when a test needs it."""
    if name == "memory":
        store = MemoryStore(TARGET)
        return Backend(name, lambda endpoint: store)
    bucket = {
        "folder": lambda: _folder(tmp_path),
        "s3-moto": lambda: _s3(request.getfixturevalue("moto_server")),
        "s3-rclone": lambda: _s3(request.getfixturevalue("rclone_server")),
        "azurite": lambda: _azure(request.getfixturevalue("azurite_server")),
        "gcs": lambda: _gcs(request.getfixturevalue("gcs_server")),
    }[name]()
    return Backend(name, lambda endpoint: open_store(bucket), bucket)


BACKENDS = [
    "memory", "folder",
    pytest.param("s3-moto", marks=pytest.mark.emulators), pytest.param("s3-rclone", marks=pytest.mark.emulators),
    pytest.param("azurite", marks=pytest.mark.emulators), pytest.param("gcs", marks=pytest.mark.emulators),
]


def context(roots: list[Path], backend: Backend, **options: Any) -> ActionContext:
    options.setdefault("retry", RetryPolicy(attempts=3, initial_delay=0.2))
    return ActionContext([str(r) for r in roots], backend.open_target, concurrency=4, chunk_size=CHUNK, **options)


# --- the mixed tree ----------------------------------------------------------------------------------

def build_mixed_tree(root: Path, *, big: int = BIG, small_files: int = 24) -> None:
    """Every kind of file the issue names, with distinct modes, owners and nanosecond mtimes."""
    write_file(root / "empty", b"", mode=0o600)
    write_file(root / "one-byte", b"x", mode=0o444)
    with open(root / "sparse.img", "wb") as fh:
        fh.truncate(SPARSE)
        fh.seek(SPARSE // 3)
        fh.write(b"island of data" * 1000)
        fh.seek(SPARSE - 5)
        fh.write(b"tail!")
    write_random(root / "big" / "hundred.bin", big, seed=7)
    write_random(root / "edges" / "chunk.bin", CHUNK, seed=8)  # read whole: the largest "small" file
    write_random(root / "edges" / "chunk+1.bin", CHUNK + 1, seed=9)  # streamed: the smallest "large" one
    write_file(root / "ünïcødé 文件" / "naïve ☃.txt", "héllo wörld".encode(), mode=0o640)
    write_file(root / "with spaces" / "a file with spaces.txt", b"spaces " * 999, mode=0o664)
    write_file(root / "with spaces" / "run me.sh", b"#!/bin/sh\necho hi\n", mode=0o751)
    for index in range(small_files):
        write_random(root / "small" / f"file {index:02}.dat", 1 + index * 2713, seed=100 + index)
    write_file(root / "links" / "original.dat", os.urandom(3 * MiB + 1), mode=0o644)
    os.link(root / "links" / "original.dat", root / "links" / "hardlink.dat")
    os.symlink("original.dat", root / "links" / "symlink.dat")
    os.symlink("/etc/hostname", root / "links" / "outside-link")  # leads out of the space: refused
    os.chown(root / "with spaces" / "a file with spaces.txt", 4321, 8765)
    os.chown(root / "one-byte", 0, 4242)
    for index, (dirpath, _, names) in enumerate(sorted(os.walk(root))):
        for offset, name in enumerate(sorted(names)):
            path = Path(dirpath) / name
            if not path.is_symlink():
                stamp = MTIME + (index * 100 + offset) * 1_000_003
                os.utime(path, ns=(stamp - 11, stamp))


def tree_items(ctx: ActionContext, root: Path) -> list[dict[str, Any]]:
    return [{"path": entry.path} for entry in ctx.fs.walk(root) if entry.kind != "directory"]


def rel_outcomes(root: Path, outcomes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {os.path.relpath(o["path"], root): o for o in outcomes}


def regular_files(before: dict[str, tuple]) -> list[str]:
    return [rel for rel, entry in before.items() if entry[0] == "file"]


def object_sha256(store: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in store.iter_read(key, chunk_size=MiB):
        digest.update(chunk)
    return digest.hexdigest()


def object_checksums(store: ObjectStore, key: str, part_size: int | None) -> tuple[str, str]:
    """(plain SHA-256, the checksum in the format ``part_size`` names) of the object's bytes,
    computed here from the bytes alone (not with the agent's own code)."""
    plain, outer, part, in_part = hashlib.sha256(), hashlib.sha256(), hashlib.sha256(), 0
    for chunk in store.iter_read(key, chunk_size=MiB):
        plain.update(chunk)
        view = memoryview(chunk)
        while part_size and view:
            take = view[: part_size - in_part]
            part.update(take)
            in_part += len(take)
            view = view[len(take):]
            if in_part == part_size:
                outer.update(part.digest())
                part, in_part = hashlib.sha256(), 0
    if not part_size:
        return plain.hexdigest(), plain.hexdigest()
    if in_part:
        outer.update(part.digest())
    return plain.hexdigest(), outer.hexdigest()


def all_keys(store: ObjectStore) -> list[str]:
    keys: list[str] = []
    marker = ""
    while True:
        page = store.list("", marker=marker, max_items=1000)
        keys += [info.key for info in page.objects]
        if page.next_marker is None:
            return keys
        marker = page.next_marker


def state(path: Path) -> HsmState:
    rec = read_record(path)
    return rec.state if rec else HsmState.UNMANAGED


def assert_migrate_outcomes(root: Path, before: dict[str, tuple], outcomes: list[dict[str, Any]]) -> None:
    by_rel = rel_outcomes(root, outcomes)
    assert by_rel["links/symlink.dat"]["status"] == "skipped"
    assert by_rel["links/outside-link"]["status"] == "failed"
    assert by_rel["links/outside-link"]["message"].startswith("refused")
    hard = [by_rel["links/original.dat"], by_rel["links/hardlink.dat"]]
    assert sorted(o["status"] for o in hard) == ["processed", "skipped"]  # one inode, migrated once
    assert hard[0]["key"] == hard[1]["key"]
    for rel in regular_files(before):
        if rel not in ("links/original.dat", "links/hardlink.dat"):
            assert by_rel[rel]["status"] == "processed", by_rel[rel]


# --- migrate, recall, reverse stub on every backend -----------------------------------------------------

@pytest.mark.parametrize("backend_name", BACKENDS)
def test_mixed_tree_migrates_recalls_and_reverse_stubs_with_identical_manifests(
        backend_name: str, request: pytest.FixtureRequest, space: Path, tmp_path: Path) -> None:
    backend = make_backend(backend_name, request, tmp_path)
    build_mixed_tree(space)
    before = manifest(space)
    regular = regular_files(before)
    ctx = context([space], backend)
    items = tree_items(ctx, space)

    migrated = actions.migrate(ctx, items, target=TARGET)
    assert [o["path"] for o in migrated] == [i["path"] for i in items]
    assert_migrate_outcomes(space, before, migrated)
    for rel in regular:
        st = (space / rel).lstat()
        assert state(space / rel) == HsmState.MIGRATED, rel
        assert st.st_blocks * 512 <= 8192, rel  # released: at most an xattr block remains
        kept = (st.st_size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
        assert kept == before[rel][2:], rel  # the stub keeps size, mode, owner and mtime
    keys = {rel: o["key"] for rel, o in rel_outcomes(space, migrated).items() if o["status"] == "processed"}
    with backend.open_target(TARGET) as store:
        for rel, key in keys.items():  # each remote copy carries the checksum of the original bytes
            meta = parse_metadata(store.head(key).metadata)
            plain, recorded = object_checksums(store, key, meta.part_size)
            assert plain == before[rel][1] and meta.sha256 == recorded, rel
            # a composite only for an upload in several parts (the S3 driver's multipart)
            assert (meta.part_size is not None) == (meta.size >= MULTIPART_FROM.get(backend_name, meta.size + 1)), rel
            assert (meta.size, meta.mode, meta.mtime_ns) == (*before[rel][2:4], before[rel][6]), rel

    recalled = actions.recall(ctx, items)
    assert only_the_escaping_link_failed(space, recalled)
    assert [o["status"] for o in recalled].count("processed") == len(regular) - 1
    assert manifest(space) == before
    assert os.stat(space / "links/original.dat").st_ino == os.stat(space / "links/hardlink.dat").st_ino
    # Holes stay holes: only the two chunks holding data are written back.
    assert os.stat(space / "sparse.img").st_blocks * 512 <= 2 * CHUNK + 64 * 1024

    # Another root, rebuilt from the objects and their metadata alone (as a second site would).
    other = tmp_path / "second-root"
    other.mkdir()
    ctx2 = context([other], backend)
    stubs = [{"path": str(other / rel), "key": key} for rel, key in keys.items()]
    stubbed = actions.reverse_stub(ctx2, stubs, target=TARGET)
    assert [o for o in stubbed if o["status"] != "processed"] == []
    for rel in keys:
        assert state(other / rel) == HsmState.MIGRATED and (other / rel).stat().st_blocks * 512 <= 8192
    assert [o for o in actions.recall(ctx2, stubs) if o["status"] != "processed"] == []
    # Hard links come back as one file (the inode went up once, under its first name).
    assert manifest(other) == {rel: before[rel] for rel in keys}
    assert len(keys) == len(regular) - 1


# --- SIGKILL mid-migrate and mid-recall ------------------------------------------------------------------

KILL_BACKENDS = ["folder", pytest.param("s3-rclone", marks=pytest.mark.emulators)]
#: Seconds the agent process pauses at each progress report (one per MiB): slows the transfer down
#: so that a kill after a quarter of the large file lands mid-transfer with over a second to spare
#: (a busy machine cannot make it late), without ever stopping the transfer.
THROTTLE = 0.02


def run_agent(spec_dir: Path, op: str, backend: Backend, root: Path, items: list[dict[str, Any]],
              throttle: float = 0.0, **options: Any) -> subprocess.Popen[str]:
    spec = {"op": op, "roots": [str(root)], "targets": {TARGET: backend.bucket}, "paths": items,
            "options": options, "throttle": throttle}
    spec_path = spec_dir / f"{op}-{time.monotonic_ns()}.json"
    spec_path.write_text(json.dumps(spec))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.agent.test_data_safety_backends", str(spec_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_mid_transfer(proc: subprocess.Popen[str], after_bytes: int) -> int:
    """Read the agent's progress until ``after_bytes`` have moved, then SIGKILL it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        report = json.loads(line)
        if "outcomes" in report:
            break
        if report["bytes_done"] >= after_bytes:
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            return report["bytes_done"]
    proc.wait(timeout=30)
    raise AssertionError(f"the agent finished before it could be killed: {proc.stderr.read() if proc.stderr else ''}")


def finish(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[-1])["outcomes"]


def assert_nothing_lost(root: Path, before: dict[str, tuple], store: ObjectStore) -> None:
    """The invariants a crash must keep, whenever it happened."""
    originals = {entry[1] for entry in before.values() if entry[0] == "file"}
    for key in all_keys(store):  # whatever the store shows is whole: no partial object passes as complete
        meta = parse_metadata(store.head(key).metadata)
        plain, recorded = object_checksums(store, key, meta.part_size)
        assert recorded == meta.sha256 and plain in originals, key
    for rel in regular_files(before):
        path = root / rel
        assert path.stat().st_size == before[rel][2], rel  # never short, never long
        rec = read_record(path)
        if rec is None or (rec.state != HsmState.MIGRATED and rec.pending is None):
            assert sha256_file(path) == before[rel][1], rel  # resident per its record: the real bytes
        else:
            assert rec.state == HsmState.MIGRATED, (rel, rec)
            plain, recorded = object_checksums(store, rec.key, rec.part_size)
            assert (plain, recorded) == (before[rel][1], rec.sha256), rel  # a stub's remote copy is complete


def only_the_escaping_link_failed(root: Path, outcomes: list[dict[str, Any]]) -> bool:
    return [rel for rel, o in rel_outcomes(root, outcomes).items() if o["status"] == "failed"] == [
        "links/outside-link"]


@pytest.mark.parametrize("backend_name", KILL_BACKENDS)
def test_sigkill_mid_migrate_and_mid_recall_loses_nothing_and_a_rerun_completes(
        backend_name: str, request: pytest.FixtureRequest, space: Path, tmp_path: Path) -> None:
    backend = make_backend(backend_name, request, tmp_path)
    build_mixed_tree(space, small_files=40)
    before = manifest(space)
    regular = regular_files(before)
    inodes = {(space / rel).stat().st_ino for rel in regular}
    ctx = context([space], backend)
    items = tree_items(ctx, space)
    big = space / "big" / "hundred.bin"

    # 1. SIGKILL the agent once a quarter of the large file has gone up.
    proc = run_agent(tmp_path, "migrate", backend, space, items, throttle=THROTTLE, target=TARGET)
    kill_mid_transfer(proc, BIG // 4)
    assert state(big) == HsmState.UNMANAGED and sha256_file(big) == before["big/hundred.bin"][1]
    with backend.open_target(TARGET) as store:
        assert not store.exists("big/hundred.bin")  # the half upload is not an object
        assert_nothing_lost(space, before, store)
    if backend_name == "folder":  # the bytes really were moving: the driver's hidden temporary file
        partial = [p for p in Path(backend.bucket["migration_target_folder"]).rglob(".hub-tmp-*")]
        assert partial and partial[0].stat().st_size > 0

    # 2. A new agent process re-runs the same batch: it completes, reusing what was uploaded.
    rerun = finish(run_agent(tmp_path, "migrate", backend, space, items, target=TARGET))
    assert only_the_escaping_link_failed(space, rerun)
    assert rel_outcomes(space, rerun)["big/hundred.bin"]["status"] == "processed"
    assert all(state(space / rel) == HsmState.MIGRATED for rel in regular)
    with backend.open_target(TARGET) as store:
        keys = all_keys(store)
        assert len(keys) == len(inodes) and not [k for k in keys if "~" in k]  # no duplicate uploads
        assert_nothing_lost(space, before, store)

    # 3. SIGKILL a recall once a quarter of the large file has come back.
    proc = run_agent(tmp_path, "recall", backend, space, items, throttle=THROTTLE)
    kill_mid_transfer(proc, BIG // 4)
    rec = read_record(big)
    assert (rec.state, rec.pending) == (HsmState.MIGRATED, Pending.RECALL)  # not marked resident
    assert sha256_file(big) != before["big/hundred.bin"][1]  # partial bytes were written
    with backend.open_target(TARGET) as store:
        assert_nothing_lost(space, before, store)

    # 4. A new process re-runs the recall: every file is back, bit for bit, with its metadata.
    recalled = finish(run_agent(tmp_path, "recall", backend, space, items))
    assert only_the_escaping_link_failed(space, recalled)
    assert rel_outcomes(space, recalled)["big/hundred.bin"]["status"] == "processed"
    assert manifest(space) == before
    assert all(state(space / rel) == HsmState.HYDRATED for rel in regular)


# --- the agent process ----------------------------------------------------------------------------------

def _agent_main(spec_path: str) -> int:
    """Run one action from a JSON spec, printing progress reports and then the outcomes."""
    spec = json.loads(Path(spec_path).read_text())
    throttle = float(spec.get("throttle") or 0)
    targets = spec["targets"]

    def progress(report: BatchProgress) -> None:
        print(json.dumps({"paths_done": report.paths_done, "bytes_done": report.bytes_done}), flush=True)
        if throttle:
            time.sleep(throttle)

    ctx = ActionContext(spec["roots"], lambda name: open_store(targets[name]), progress=progress,
                        progress_interval=0, concurrency=4, chunk_size=MiB,
                        retry=RetryPolicy(attempts=2, initial_delay=0.1))
    outcomes = getattr(actions, spec["op"])(ctx, spec["paths"], **spec["options"])
    print(json.dumps({"outcomes": outcomes}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_agent_main(sys.argv[1]))
