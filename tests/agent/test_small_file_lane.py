"""The small-file lane (``agent.lane``): many small files to a folder target, a group at a time,
in worker processes - with every data-safety invariant of the general path, real bytes on disk,
and a real SIGKILL mid-group."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from agent import actions, lane, native
from agent.drivers.fs import FolderStore, encode_metadata
from agent.drivers.posix import PosixFilesystem
from agent.hsm.metadata import ObjectMetadata, parse_metadata, to_metadata
from agent.hsm.state import HsmRecord, HsmState, Pending, read_record, write_record
from tests.agent.hsm_fixtures import manifest, sha256_file, write_random
from tests.conftest import require

CHUNK = 64 * 1024
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def target(tmp_path: Path) -> Path:
    folder = tmp_path / "target"
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True, params=["c-core", "python-loop"])
def lane_loop(request, monkeypatch) -> str:
    """Every test here runs twice: with the lane's C core (``agent.native``) and with its Python
    loop (the core switched off, for this process through ``ctx`` and for a subprocess through
    its environment)."""
    if request.param == "c-core":
        require(native.core() is not None, "the lane's C core is not built (make native)")
    else:
        monkeypatch.setenv(native.ENV_SWITCH, "0")
        monkeypatch.setattr(sys.modules[__name__], "LANE_NATIVE", False)
    return request.param


LANE_NATIVE = True


def ctx(space: Path, target: Path, **kwargs) -> actions.ActionContext:
    kwargs.setdefault("lane_native", LANE_NATIVE)
    return actions.ActionContext(roots=[space], open_target=lambda name: FolderStore(target), chunk_size=CHUNK,
                                 **kwargs)


def small_tree(space: Path, count: int = 30) -> list[Path]:
    """Files of 0 bytes to a little under CHUNK, in three directories, unicode and spaces in names."""
    names = ["plain", "with space", "ünïcode"]
    return [write_random(space / f"dir{i % 3}" / f"{names[i % 3]} {i}.bin", (i * 2111) % CHUNK, seed=i)
            for i in range(count)]


def items(paths: list[Path]) -> list[dict]:
    return [{"path": str(p)} for p in paths]


def statuses(out: list[dict]) -> Counter:
    return Counter(o["status"] for o in out)


def object_xattr(path: Path) -> dict:
    return json.loads(os.getxattr(path, "user.hub.metadata"))


# --- what it writes is what the general path writes ------------------------------------------------

@pytest.fixture
def own_pool(monkeypatch):
    """The lane's pools made here and closed after the test, with their counters to read."""
    pools: dict[int, lane.LanePool] = {}

    def pool(workers: int) -> lane.LanePool:
        return pools.setdefault(workers, lane.LanePool(workers))

    monkeypatch.setattr(actions, "shared_pool", pool)
    yield pools
    for made in pools.values():
        made.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_the_lane_premigrates_exactly_as_the_general_path_does(tmp_path, workers, own_pool):
    spaces = {}
    for name, lane_workers in (("lane", workers), ("general", None)):
        space, target = tmp_path / name / "space", tmp_path / name / "target"
        target.mkdir(parents=True)
        files = small_tree(space)
        out = actions.migrate(ctx(space, target, lane_workers=lane_workers), items(files), target="t",
                              premigrate=True)
        assert statuses(out) == {"processed": len(files)}
        assert all(o["message"] == "premigrated (remote copy verified)" for o in out)
        spaces[name] = (space, target, files, out)
    assert (own_pool[workers].completed, own_pool[workers].handed_back) == (1, 0)  # the lane did it all
    (_, target_a, files_a, out_a), (_, target_b, files_b, out_b) = spaces["lane"], spaces["general"]
    assert [o["key"] for o in out_a] == [o["key"] for o in out_b]
    for fa, fb, o in zip(files_a, files_b, out_a, strict=True):
        ra, rb = read_record(fa), read_record(fb)
        assert (ra.state, ra.target, ra.key, ra.sha256, ra.size, ra.stub_size, ra.pending, ra.part_size) == (
            rb.state, rb.target, rb.key, rb.sha256, rb.size, rb.stub_size, rb.pending, rb.part_size)
        assert (ra.inode, ra.mtime_ns) == (fa.stat().st_ino, fa.stat().st_mtime_ns)
        obj_a, obj_b = target_a / o["key"], target_b / o["key"]
        assert obj_a.read_bytes() == fa.read_bytes() == obj_b.read_bytes()
        ma, mb = parse_metadata(object_xattr(obj_a)), parse_metadata(object_xattr(obj_b))
        assert (ma.sha256, ma.size, ma.mode, ma.uid, ma.gid, ma.path) == (
            mb.sha256, mb.size, mb.mode, mb.uid, mb.gid, mb.path)
        assert (ma.mtime_ns, ma.inode) == (fa.stat().st_mtime_ns, fa.stat().st_ino)
    assert not [p for p in target_a.rglob(".hub-*")]  # no temporary file left


def test_the_object_metadata_is_byte_for_byte_what_the_encoder_gives(space, target):
    """The C core renders the metadata from a template; whatever the loop, the xattr holds
    exactly ``encode_metadata(to_metadata(...))`` of the file as it was read - odd modes, times
    before 1970, names that need escaping, and a path too long to keep (left out)."""
    deep = "ü" * 100 + "/" + "ü" * 100  # 1,200 percent-encoded characters: over MAX_PATH_CHARS
    files = [write_random(space / name, size, seed=i) for i, (name, size) in enumerate(
        [('quote " back\\slash %41.bin', 10), ("ünïcode 日本.bin", 0), ("setuid.bin", 4096),
         ("old.bin", 1), (f"{deep}/long.bin", 33)])]
    os.chmod(space / "setuid.bin", 0o4751)
    os.utime(space / "old.bin", ns=(-1_500_000_000_123_456_789, -86_400_000_000_007))
    seen = {f: os.stat(f) for f in files}
    out = actions.migrate(ctx(space, target), items(files), target="t", premigrate=True)
    assert statuses(out) == {"processed": len(files)}
    for f, o in zip(files, out, strict=True):
        st = seen[f]
        raw = os.getxattr(target / o["key"], "user.hub.metadata")
        want = encode_metadata(to_metadata(ObjectMetadata(
            sha256=sha256_file(f), size=st.st_size, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
            mtime_ns=st.st_mtime_ns, atime_ns=st.st_atime_ns, path=str(f.relative_to(space)), inode=st.st_ino,
            ctime_ns=st.st_ctime_ns)))
        assert raw == want
        assert os.getxattr(f, "user.hub.hsm") == HsmRecord(
            HsmState.PREMIGRATED, "t", o["key"], sha256_file(f), st.st_size, mtime_ns=st.st_mtime_ns,
            inode=st.st_ino, ctime_ns=st.st_ctime_ns).to_bytes()
    assert "hubpath" not in object_xattr(target / out[-1]["key"])  # too long: left out, as to_metadata does


def test_a_migrated_record_is_byte_for_byte_what_hsm_record_gives(space, target, monkeypatch):
    files = [write_random(space / f"{i}.bin", size, seed=i) for i, size in enumerate([0, 50, 100, 5000])]
    seen = {f: os.stat(f) for f in files}
    raw: dict[Path, bytes] = {}

    def failpoint(step: str) -> None:
        if step == "lane:state-synced":  # written and synced, pending the stub
            raw.update({f: os.getxattr(f, "user.hub.hsm") for f in files})

    monkeypatch.setattr("agent.drivers.posix._failpoint", failpoint)
    out = actions.migrate(ctx(space, target, lane_workers=0), items(files), target="t", stub_size=100)
    assert statuses(out) == {"processed": len(files)}
    for f, o in zip(files, out, strict=True):
        st = seen[f]
        assert raw[f] == HsmRecord(
            HsmState.MIGRATED, "t", o["key"], sha256_file(target / o["key"]), st.st_size, mtime_ns=st.st_mtime_ns,
            inode=st.st_ino, ctime_ns=st.st_ctime_ns, pending=Pending.STUB, stub_size=min(100, st.st_size)).to_bytes()
        assert read_record(f).pending is None and read_record(f).stub_size == min(100, st.st_size)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_full_migration_leaves_stubs_and_a_recall_brings_back_every_byte(space, target, workers, own_pool):
    files = small_tree(space) + [write_random(space / "big" / f"{i}.bin", CHUNK - i, seed=i) for i in range(3)]
    before = manifest(space)
    out = actions.migrate(ctx(space, target, lane_workers=workers), items(files), target="t", stub_size=100)
    assert statuses(out) == {"processed": len(files)}
    assert (own_pool[workers].completed, own_pool[workers].handed_back) == (1, 0)  # one group, in the lane
    for f in files:
        record = read_record(f)
        assert record.state == HsmState.MIGRATED and record.pending is None
        assert record.stub_size == min(100, record.size)
        assert f.stat().st_size == record.size  # the stub keeps its size...
        if record.size >= 8 * 4096:  # ...not its blocks: the partial first and last remain, one may hold xattrs
            assert f.stat().st_blocks * 512 <= 3 * 4096
        assert f.stat().st_mtime_ns == record.mtime_ns
    again = actions.recall(ctx(space, target), items(files))
    assert statuses(again) == {"processed": len(files)}
    after = manifest(space)
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}


def test_running_the_lane_twice_equals_once(space, target):
    files = small_tree(space, 12)
    first = actions.migrate(ctx(space, target), items(files), target="t", premigrate=True)
    objects = sorted(p.name for p in target.rglob("*") if p.is_file())
    again = actions.migrate(ctx(space, target), items(files), target="t", premigrate=True)
    assert statuses(first) == {"processed": 12} and statuses(again) == {"skipped": 12}
    assert sorted(p.name for p in target.rglob("*") if p.is_file()) == objects
    full = actions.migrate(ctx(space, target), items(files), target="t")  # premigrated: released, no upload
    assert statuses(full) == {"processed": 12}
    assert sorted(p.name for p in target.rglob("*") if p.is_file()) == objects


# --- what it hands back to the general path ---------------------------------------------------------

def test_what_the_lane_does_not_handle_gets_the_general_paths_answer(space, target, tmp_path):
    plain = write_random(space / "plain.bin", 5000, seed=1)
    large = write_random(space / "large.bin", 3 * CHUNK + 5, seed=2)
    managed = write_random(space / "managed.bin", 700, seed=3)
    taken = write_random(space / "taken.bin", 900, seed=4)
    (space / "link.bin").symlink_to(plain)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    (space / "escape.bin").symlink_to(outside)
    (target / "taken.bin").write_bytes(b"somebody else's object")  # the base key is occupied
    assert actions.migrate(ctx(space, target), items([managed]), target="t", premigrate=True)[0]["status"] == \
        "processed"
    paths = [plain, large, managed, taken, space / "link.bin", space / "escape.bin", space / "missing.bin"]
    out = actions.migrate(ctx(space, target), items(paths), target="t", premigrate=True)
    by_name = {Path(o["path"]).name: o for o in out}
    assert by_name["plain.bin"]["status"] == "processed"
    assert by_name["large.bin"]["status"] == "processed"
    assert by_name["managed.bin"]["status"] == "skipped"
    assert by_name["taken.bin"]["status"] == "processed" and by_name["taken.bin"]["key"] != "taken.bin"
    assert (target / "taken.bin").read_bytes() == b"somebody else's object"  # never replaced
    assert (target / by_name["taken.bin"]["key"]).read_bytes() == taken.read_bytes()
    assert by_name["link.bin"]["status"] == "skipped" and "symlink" in by_name["link.bin"]["message"]
    assert by_name["escape.bin"]["status"] in ("skipped", "failed")
    assert not (target / "escape.bin").exists() and outside.read_bytes() == b"secret"
    assert by_name["missing.bin"]["status"] == "failed"


def test_a_busy_file_is_handed_back_and_reported_busy(space, target):
    import fcntl

    path = write_random(space / "busy.bin", 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another HSM operation holds it
        out = actions.migrate(ctx(space, target), items([path]), target="t", premigrate=True)
    finally:
        os.close(fd)
    assert out[0]["status"] == "failed" and "busy" in out[0]["message"]
    assert read_record(path) is None and not list(target.rglob("busy.bin"))


# --- a file changed during the migration is never recorded, never released -------------------------

@pytest.mark.parametrize(("skip_modified", "status"), [(False, "failed"), (True, "skipped")])
def test_a_file_changed_after_its_upload_is_not_recorded_and_its_object_is_discarded(
        space, target, monkeypatch, skip_modified, status):
    files = [write_random(space / f"{i}.bin", 3000 + i, seed=i) for i in range(5)]
    victim = files[2]
    original = victim.read_bytes()
    seen: list[str] = []

    def failpoint(step: str) -> None:
        seen.append(step)
        if step == "lane:uploaded" and seen.count(step) == 3:  # the third file's object was just linked
            with open(victim, "ab") as handle:
                handle.write(b"a user's append")

    monkeypatch.setattr("agent.drivers.posix._failpoint", failpoint)
    out = actions.migrate(ctx(space, target, lane_workers=0), items(files), target="t",
                          skip_modified_during_migrate=skip_modified)
    by_path = {o["path"]: o for o in out}
    assert by_path[str(victim)]["status"] == status
    assert "modified during migrate" in by_path[str(victim)]["message"]
    assert read_record(victim) is None
    assert victim.read_bytes() == original + b"a user's append"  # nothing released
    assert not (target / "2.bin").exists()  # the object of the old content is discarded
    assert [by_path[str(f)]["status"] for f in files if f != victim] == ["processed"] * 4


def test_an_object_removed_or_replaced_before_the_commit_fails_its_file_and_nothing_is_recorded(
        space, target, monkeypatch):
    """Between the upload and the record, the object itself is checked: gone, or another file at
    its key (same name, other inode), and the source keeps no record; a source renamed away is
    "modified" (its inode is no longer at its name)."""
    files = [write_random(space / f"{i}.bin", 3000 + i, seed=i) for i in range(5)]
    calls: list[str] = []

    def failpoint(step: str) -> None:
        calls.append(step)
        if step == "lane:uploaded" and calls.count(step) == len(files):  # every object is linked
            (target / "1.bin").unlink()
            (target / "2.bin").unlink()
            (target / "2.bin").write_bytes(b"x" * 3002)  # same size, another inode
            os.rename(space / "3.bin", space / "3-renamed.bin")

    monkeypatch.setattr("agent.drivers.posix._failpoint", failpoint)
    out = actions.migrate(ctx(space, target, lane_workers=0), items(files), target="t", premigrate=True)
    by_name = {Path(o["path"]).name: o for o in out}
    assert by_name["1.bin"]["status"] == "failed"
    assert by_name["1.bin"]["message"].startswith("verification failed: the object is gone (No such file")
    assert by_name["2.bin"]["status"] == "failed"
    assert by_name["2.bin"]["message"] == "verification failed: the object at the key was replaced"
    assert (target / "2.bin").read_bytes() == b"x" * 3002  # left as it is
    assert by_name["3.bin"]["status"] == "failed" and "inode changed)" in by_name["3.bin"]["message"]
    assert not (target / "3.bin").exists()  # its object is discarded
    assert read_record(space / "3-renamed.bin") is None
    assert [read_record(space / f"{i}.bin") is None for i in (1, 2)] == [True, True]
    assert [by_name[f"{i}.bin"]["status"] for i in (0, 4)] == ["processed", "processed"]


def test_a_file_changed_while_the_groups_records_are_synced_is_not_released(space, target, monkeypatch):
    files = [write_random(space / f"{i}.bin", 20000 + i, seed=i) for i in range(4)]
    victim = files[1]
    original = victim.read_bytes()

    def failpoint(step: str) -> None:
        if step == "lane:state-synced":  # records written and synced, no block released yet
            with open(victim, "ab") as handle:
                handle.write(b"late write")

    monkeypatch.setattr("agent.drivers.posix._failpoint", failpoint)
    out = actions.migrate(ctx(space, target, lane_workers=0), items(files), target="t")
    by_path = {o["path"]: o for o in out}
    assert by_path[str(victim)]["status"] == "failed"
    assert "changed after it was recorded" in by_path[str(victim)]["message"]
    assert read_record(victim) is None  # resident, unmanaged: its bytes are newer than the copy
    assert victim.read_bytes() == original + b"late write"
    for f in files:
        if f != victim:
            assert by_path[str(f)]["status"] == "processed" and read_record(f).state == HsmState.MIGRATED


# --- cancel ------------------------------------------------------------------------------------------

def test_a_cancel_stops_the_lane_between_groups(space, target):
    files = [write_random(space / f"d{i // 100}/{i}.bin", 100, seed=i) for i in range(600)]
    done: list[int] = []

    def should_cancel() -> bool:
        done.append(1)
        return sum(1 for f in files if read_record(f) is not None) > 0

    out = actions.migrate(ctx(space, target, should_cancel=should_cancel), items(files), target="t",
                          premigrate=True)
    counts = statuses(out)
    assert counts["processed"] == actions.STAGE_GROUP  # the first group, then nothing more
    assert counts["aborted"] == 600 - actions.STAGE_GROUP
    assert all(o["message"] == "not attempted: cancelled" for o in out if o["status"] == "aborted")


# --- a worker that dies loses nothing ----------------------------------------------------------------

def test_a_dead_worker_hands_its_group_back_to_the_general_path(space, target, monkeypatch):
    files = small_tree(space, 10)
    pool = lane.LanePool(1)
    monkeypatch.setattr(actions, "shared_pool", lambda workers: pool)
    monkeypatch.setattr(lane, "run_group", _die)  # the worker process dies mid-group
    try:
        out = actions.migrate(ctx(space, target, lane_workers=1), items(files), target="t", premigrate=True)
    finally:
        pool.close()
    assert statuses(out) == {"processed": 10}
    for f in files:
        assert (target / read_record(f).key).read_bytes() == f.read_bytes()


def test_in_a_daemonic_process_the_lane_runs_on_the_calling_thread(space, target):
    """A Celery prefork child is daemonic and may not start processes: the lane must not try."""
    import multiprocessing

    files = small_tree(space, 6)
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_migrate_into, args=(space, target, files, answers), daemon=True)
    child.start()
    out = answers.get(timeout=60)
    child.join(timeout=60)
    assert statuses(out) == {"processed": 6}, out
    assert all(read_record(f).state == HsmState.PREMIGRATED for f in files)


def _migrate_into(space: Path, target: Path, files: list[Path], answers) -> None:
    answers.put(actions.migrate(ctx(space, target, lane_workers=2), items(files), target="t", premigrate=True))


def _die(group: lane.LaneGroup) -> list:
    os.kill(os.getpid(), signal.SIGKILL)
    return []


# --- SIGKILL at each step of a group, then a re-run: nothing lost ------------------------------------

RUNNER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from agent import actions
    from agent.drivers import posix
    from agent.drivers.fs import FolderStore

    def main():
        space, target, step, premigrate = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
        count = [0]

        def failpoint(name):
            if name == step:
                count[0] += 1
                if count[0] == int(sys.argv[6]):
                    os.kill(os.getpid(), signal.SIGKILL)

        posix._failpoint = failpoint
        paths = sorted(os.path.join(d, n) for d, _, names in os.walk(space) for n in names)
        ctx = actions.ActionContext(roots=[space], open_target=lambda name: FolderStore(target),
                                    chunk_size=64 * 1024, lane_workers=0)
        actions.migrate(ctx, [{"path": p} for p in paths], target="t", premigrate=premigrate)

    if __name__ == "__main__":
        main()
""")

#: (failpoint, premigrate, which call of it kills: the 7th file's, or the group's first sync)
LANE_STEPS = [("lane:uploaded", True, 7), ("lane:recorded", True, 7), ("lane:uploaded", False, 7),
              ("lane:recorded", False, 7), ("lane:state-synced", False, 1)]


@pytest.mark.parametrize(("step", "premigrate", "call"), LANE_STEPS)
def test_sigkill_at_each_lane_step_loses_nothing_and_a_rerun_finishes(space, target, tmp_path, step, premigrate,
                                                                     call):
    files = small_tree(space, 20)
    before = manifest(space)
    digests = {f: sha256_file(f) for f in files}
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    proc = subprocess.run([sys.executable, str(script), str(ROOT), str(space), str(target), step,
                           "1" if premigrate else "0", str(call)], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    for f in files:  # a file is resident with its bytes, or a stub whose record names a whole object
        record = read_record(f)
        if record is None or record.state == HsmState.PREMIGRATED:
            assert sha256_file(f) == digests[f]
        else:
            assert record.state == HsmState.MIGRATED and record.pending in (Pending.STUB, None)
            assert sha256_file(target / record.key) == digests[f]
    out = actions.migrate(ctx(space, target), items(files), target="t", premigrate=premigrate)
    assert set(statuses(out)) <= {"processed", "skipped"}, out
    want = HsmState.PREMIGRATED if premigrate else HsmState.MIGRATED
    assert all(read_record(f).state == want and read_record(f).pending is None for f in files)
    if not premigrate:
        assert statuses(actions.recall(ctx(space, target), items(files))) == {"processed": len(files)}
    assert {k: v[:2] for k, v in manifest(space).items()} == {k: v[:2] for k, v in before.items()}
    assert not [p for p in target.rglob(".hub-tmp-*")] or step == "lane:uploaded"


CAP_DAC_READ_SEARCH = 2
WITHOUT_DAC_READ_SEARCH = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    from agent import actions, lane
    from agent.drivers.fs import FolderStore

    def main():
        space, target = sys.argv[2], sys.argv[3]
        with open("/proc/self/status") as status:  # the capability is really gone
            effective = int(next(line for line in status if line.startswith("CapEff:")).split()[1], 16)
        pool = lane.LanePool(0)
        actions.shared_pool = lambda workers: pool
        paths = sorted(os.path.join(d, n) for d, _, names in os.walk(space) for n in names)
        ctx = actions.ActionContext(roots=[space], open_target=lambda name: FolderStore(target),
                                    chunk_size=64 * 1024, lane_workers=0,
                                    lane_native=os.environ.get("AGENT_SMALL_FILE_NATIVE") != "0")
        out = actions.migrate(ctx, [{"path": p} for p in paths], target="t")
        print(json.dumps({"effective": effective, "out": out,
                          "completed": pool.completed, "handed_back": pool.handed_back}))

    if __name__ == "__main__":
        main()
""")


def test_an_agent_without_cap_dac_read_search_still_runs_the_lane(space, target, tmp_path):
    """An agent running as an ordinary user or a confined root lacks CAP_DAC_READ_SEARCH, which
    kernels before 6.10 require to link an ``O_TMPFILE`` inode by its descriptor (the C core then
    links it through ``/proc/self/fd``; newer kernels allow a caller its own descriptor). Run with
    the capability dropped from the bounding set (``setpriv``)."""
    require(os.geteuid() == 0 and Path("/usr/bin/setpriv").exists(), "needs root and setpriv to drop a capability")
    files = small_tree(space, count=12)
    before = manifest(space)
    script = tmp_path / "no_cap.py"
    script.write_text(WITHOUT_DAC_READ_SEARCH)
    proc = subprocess.run(["setpriv", "--inh-caps=-dac_read_search", "--bounding-set=-dac_read_search",
                           sys.executable, str(script), str(ROOT), str(space), str(target)],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert not report["effective"] & (1 << CAP_DAC_READ_SEARCH), report
    assert statuses(report["out"]) == {"processed": len(files)}, report["out"]
    assert (report["completed"], report["handed_back"]) == (1, 0)  # the lane did every file
    assert not list(target.rglob(".hub-tmp-*"))
    assert statuses(actions.recall(ctx(space, target), items(files))) == {"processed": len(files)}
    assert {k: v[:2] for k, v in manifest(space).items()} == {k: v[:2] for k, v in before.items()}


def test_a_record_pending_stub_left_by_a_crash_is_finished_by_the_general_path(space, target):
    path = write_random(space / "f.bin", 40000)
    digest = sha256_file(path)
    out = actions.migrate(ctx(space, target), items([path]), target="t", premigrate=True)
    record = read_record(path)
    fd = os.open(path, os.O_RDWR)
    try:  # as the lane leaves it after "lane:state-synced": migrated, pending stub, blocks still there
        write_record(fd, record.moved_to(HsmState.MIGRATED, pending=Pending.STUB))
    finally:
        os.close(fd)
    assert out[0]["status"] == "processed"
    again = actions.migrate(ctx(space, target), items([path]), target="t")
    assert again[0]["status"] == "processed" and "interrupted" in again[0]["message"]
    # released: at most the partial last block and an xattr block remain
    assert read_record(path).pending is None and path.stat().st_blocks * 512 <= 2 * 4096
    assert actions.recall(ctx(space, target), items([path]))[0]["status"] == "processed"
    assert sha256_file(path) == digest


# --- where the lane applies ------------------------------------------------------------------------

def test_the_lane_is_not_used_for_overwrite_verify_content_sidecar_metadata_or_a_subclass(space, target,
                                                                                         monkeypatch):
    calls: list[int] = []
    real = lane.run_group
    monkeypatch.setattr(lane, "run_group", lambda group: calls.append(len(group.rels)) or real(group))
    files = small_tree(space, 4)
    actions.migrate(ctx(space, target), items(files), target="t", premigrate=True)
    assert calls == [4]
    for f in files:
        fd = os.open(f, os.O_RDWR)
        try:
            os.removexattr(fd, "user.hub.hsm")
        finally:
            os.close(fd)
    for target_dir in target.iterdir():
        if target_dir.is_dir():
            for obj in target_dir.iterdir():
                obj.unlink()
    calls.clear()
    actions.migrate(ctx(space, target), items(files), target="t", premigrate=True, overwrite=True)
    actions.migrate(ctx(space, target), items(files), target="t", premigrate=True, verify_content=True)
    sidecar = actions.ActionContext(roots=[space], chunk_size=CHUNK,
                                    open_target=lambda name: FolderStore(target, metadata="sidecar"))
    actions.migrate(sidecar, items(files), target="t", premigrate=True)

    class Subclass(PosixFilesystem):
        pass

    sub = actions.ActionContext(roots=[space], chunk_size=CHUNK, open_target=lambda name: FolderStore(target),
                                filesystem=Subclass([space], chunk_size=CHUNK))
    actions.migrate(sub, items(files), target="t", premigrate=True)
    assert calls == []


def test_lane_workers_must_be_none_or_a_whole_number(space, target):
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="lane_workers"):
            ctx(space, target, lane_workers=bad)
