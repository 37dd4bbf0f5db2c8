"""The GPFS (Storage Scale) driver against fake ``mm*`` executables that print recorded output.

No GPFS exists here, so the commands are real processes standing in for the real ones
(``tests/agent/gpfs_fixtures``): the driver's subprocess helper runs them exactly as it would run
``/usr/lpp/mmfs/bin/mm*`` - no shell, a small C-locale environment, timeouts that kill the
whole process group - and the fakes log the argv and environment they received, so the tests
check the exact command lines. The HSM operations the driver inherits from the POSIX driver run
on real files in a temporary directory.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from datetime import UTC, datetime

import pytest

from agent.drivers.base import AccessDenied, PermanentError, TransientError
from agent.drivers.gpfs import (
    SCAN_FIELDS,
    GpfsFilesystem,
    ListRecord,
    Quota,
    parse_mode,
    parse_policy_list,
    scan_entry,
    scan_rules,
)
from agent.drivers.gpfs_commands import (
    MmCommandBusy,
    MmCommandFailed,
    MmCommands,
    MmCommandTimeout,
    MmOutputError,
    decode_value,
    is_busy,
    parse_y,
    y_ctime,
)
from agent.drivers.memory import MemoryStore
from agent.drivers.posix import EntryKind, PathRefused, PosixFilesystem, ResultStatus
from agent.hsm.state import HsmState, read_record
from agent.transfer import RetryPolicy
from tests.agent.gpfs_fixtures import FakeGpfs, process_alive, recorded
from tests.agent.hsm_fixtures import sha256_file, write_random

pytestmark = pytest.mark.smoke
KIB = 1024
CHUNK = 64 * 1024
SECRET = "s3cr3t-broker-password"


@pytest.fixture
def fake(tmp_path):
    return FakeGpfs(tmp_path / "bin")


@pytest.fixture
def gpfs(fake, space):
    return GpfsFilesystem([space], bin_dir=fake.bin_dir, command_timeout=20, chunk_size=CHUNK,
                          retry=RetryPolicy(attempts=3, sleep=lambda s: None))


def argv(fake, command):
    return [call["args"] for call in fake.calls(command)]


# --- the -Y format -----------------------------------------------------------------------------------

def test_parse_y_splits_on_colons_first_and_percent_decodes_each_value():
    text = recorded("mmlsfs_all.txt").read_text()
    rows = parse_y(text)[""]
    by_field = {(r["deviceName"], r["fieldName"]): r["data"] for r in rows}
    assert by_field["gpfs1", "UID"] == "C0A80A0B:617BFC6B"
    assert by_field["gpfs1", "defaultMountPoint"] == "/gpfs/gpfs1"
    assert by_field["gpfs1", "create-time"] == "Fri Oct 29 14:02:11 2021"
    assert by_field["archive", "filesystemVersion"] == "27.00 (5.1.3.0)"
    assert set(rows[0]) == {"version", "deviceName", "fieldName", "data", "remarks"}  # no "reserved" columns


def test_parse_y_reads_each_section_with_its_own_header():
    sections = parse_y(recorded("mmdf_gpfs1.txt").read_text(), command="mmdf")
    assert set(sections) == {"nsd", "poolTotal", "data", "metadata", "fsTotal", "inode"}
    assert [r["nsdName"] for r in sections["nsd"]] == ["nsd01", "nsd02", "nsd03", "nsd04"]
    assert [(r["poolName"], r["poolSize"]) for r in sections["poolTotal"]] == [
        ("system", "2147483648"), ("data", "214748364800")]
    assert sections["inode"] == [{"version": "1", "usedInodes": "12345678", "freeInodes": "987654",
                                  "allocatedInodes": "13333332", "maxInodes": "603979776"}]


def test_parse_y_reads_data_with_the_latest_header_when_a_section_repeats_it():
    text = (
        "*** Report for USR GRP FILESET quotas on gpfs1\n"
        "mmrepquota::HEADER:version:reserved:reserved:filesystemName:quotaType:id:name:blockUsage:\n"
        "mmrepquota::0:1:::gpfs1:FILESET:1:projects:100:\n"
        "*** Report for USR GRP FILESET quotas on gpfs2\n"
        "mmrepquota::HEADER:version:reserved:reserved:filesystemName:name:quotaType:blockUsage:filesUsage:\n"
        "mmrepquota::0:2:::gpfs2:scratch:FILESET:200:7:\n"
    )
    rows = parse_y(text)[""]
    assert [(r["filesystemName"], r["name"], r["blockUsage"]) for r in rows] == [
        ("gpfs1", "projects", "100"), ("gpfs2", "scratch", "200")]
    assert rows[1]["filesUsage"] == "7" and "filesUsage" not in rows[0]


def test_parse_y_pads_short_lines_and_skips_lines_that_are_not_records():
    text = ("No snapshots in file system gpfs1\n"
            "mmlsfs::HEADER:version:reserved:reserved:deviceName:fieldName:data:remarks:\n"
            "mmlsfs::0:1:::gpfs1:blockSize\n"
            "mmlsfs: 6027-1234 a warning that is not a record\n"
            "mmlsfs: Warning: quota files: not checked: \n")
    assert parse_y(text)[""] == [{"version": "1", "deviceName": "gpfs1", "fieldName": "blockSize", "data": "",
                                  "remarks": ""}]
    assert parse_y("No snapshots in file system gpfs1\n") == {}


def test_parse_y_refuses_data_that_has_no_header():
    with pytest.raises(MmOutputError) as raised:
        parse_y("mmdf:poolTotal:0:1:::system:1:2:3:\n")
    assert isinstance(raised.value, PermanentError)


def test_decoded_values_keep_bytes_that_are_not_utf8():
    assert decode_value("%2Fgpfs1%2Fcaf%C3%A9") == "/gpfs1/café"
    assert os.fsencode(decode_value("%2Fdata%2Flatin1-%E9")) == b"/data/latin1-\xe9"
    assert decode_value("100%25 done") == "100% done"


def test_ctime_values_are_read_as_the_nodes_local_time():
    created = y_ctime("Wed May  1 00:30:02 2024")
    assert created is not None and created.tzinfo is not None
    assert created.replace(tzinfo=None) == datetime(2024, 5, 1, 0, 30, 2)
    assert y_ctime("--") is None and y_ctime("Wed Foo 1 00:30:02 2024") is None


# --- the subprocess helper ---------------------------------------------------------------------------

def test_commands_run_without_a_shell_in_a_small_c_locale_environment(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_BROKER_PASSWORD", SECRET)
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    hostile = f"$(touch {tmp_path}/pwned); `touch {tmp_path}/pwned2` | echo hi > {tmp_path}/pwned3"
    fake.respond("mmlsfileset", None, stdout="")
    MmCommands(fake.bin_dir).run("mmlsfileset", ["gpfs1", hostile, "with space", "-Y"])
    call = fake.calls("mmlsfileset")[-1]
    assert call["args"] == ["gpfs1", hostile, "with space", "-Y"]
    assert not any((tmp_path / name).exists() for name in ("pwned", "pwned2", "pwned3"))
    assert call["env"]["LC_ALL"] == "C" and call["env"]["LANG"] == "C"
    assert call["env"]["PATH"].split(":")[0] == str(fake.bin_dir)
    assert set(call["env"]) <= {"PATH", "LANG", "LC_ALL", "HOME", "TZ"}
    assert SECRET not in repr(call["env"])


def test_a_command_that_hangs_is_killed_with_its_children_and_raises_a_transient_error(fake):
    fake.respond("mmdf", None, sleep=120, child=True)
    started = time.monotonic()
    with pytest.raises(MmCommandTimeout) as raised:
        MmCommands(fake.bin_dir, timeout=1.5, kill_grace=2).run("mmdf", ["gpfs1", "-Y"])
    assert time.monotonic() - started < 10
    assert isinstance(raised.value, TransientError)
    assert "mmdf timed out after 1.5 s" in str(raised.value) and raised.value.returncode is None
    pids = [fake.calls("mmdf")[-1]["pid"], *fake.children()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5  # the orphaned child is reaped by init, not by us
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(pid) for pid in pids)


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_period(fake):
    fake.respond("mmlsfileset", None, sleep=120, ignore_term=True)
    started = time.monotonic()
    with pytest.raises(MmCommandTimeout):
        MmCommands(fake.bin_dir, timeout=1, kill_grace=0.5).run("mmlsfileset", ["gpfs1", "-Y"])
    assert time.monotonic() - started < 8
    assert not process_alive(fake.calls("mmlsfileset")[-1]["pid"])


def test_a_failed_command_raises_a_permanent_error_naming_the_command_exit_code_and_reason(fake, monkeypatch):
    monkeypatch.setenv("HUB_BROKER_PASSWORD", SECRET)
    fake.respond("mmlsfileset", ["gpfs9", "-L", "-Y"], exit=1, stderr=(
        "mmlsfileset: File system gpfs9 is not known to the GPFS cluster.\n"
        "mmlsfileset: Command failed. Examine previous error messages to determine cause.\n"))
    with pytest.raises(MmCommandFailed) as raised:
        MmCommands(fake.bin_dir).run("mmlsfileset", ["gpfs9", "-L", "-Y"])
    error = raised.value
    assert isinstance(error, PermanentError) and not isinstance(error, TransientError)
    assert str(error) == ("mmlsfileset failed with exit code 1: mmlsfileset: File system gpfs9 is not known "
                          "to the GPFS cluster.")
    assert (error.command, error.returncode) == ("mmlsfileset", 1)
    assert SECRET not in str(error) and str(fake.bin_dir) not in str(error)


def test_check_false_returns_the_failed_result_for_the_caller_to_judge(fake):
    fake.respond("mmlsquota", None, exit=3, stdout="partial\n", stderr="oops\n")
    result = MmCommands(fake.bin_dir).run("mmlsquota", ["-j", "x", "-Y", "gpfs1"], check=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, "partial\n", "oops\n")
    assert result.args == ("-j", "x", "-Y", "gpfs1")


@pytest.mark.parametrize("message", [
    "mmcrsnapshot: Unable to quiesce all nodes; some processes are busy or holding required resources.",
    "mmdelsnapshot: Another mmdelsnapshot command is already running. Try again later.",
    "mmlsfileset: The cluster manager for file system gpfs1 is not responding, unavailable.",
    "mmdf: Resource temporarily unavailable",
])
def test_a_failure_saying_the_cluster_is_busy_is_transient(fake, message):
    fake.respond("mmcrsnapshot", None, exit=1, stderr=message + "\n")
    with pytest.raises(MmCommandBusy) as raised:
        MmCommands(fake.bin_dir).run("mmcrsnapshot", ["gpfs1", "nightly"])
    assert isinstance(raised.value, TransientError)
    assert "exit code 1" in str(raised.value) and "retry later" in str(raised.value)


def test_ordinary_failures_are_not_mistaken_for_busy_ones():
    assert not is_busy("mmlsfileset: File system gpfs9 is not known to the GPFS cluster.")
    assert not is_busy("mmcrsnapshot: Incorrect option: -x. Blocksize must be a power of 2.")


def test_a_command_killed_by_a_signal_is_transient(fake):
    fake.respond("mmdf", None, signal=signal.SIGKILL)
    with pytest.raises(MmCommandBusy, match="killed by signal 9"):
        MmCommands(fake.bin_dir).run("mmdf", ["gpfs1", "-Y"])


def test_gpfs_message_codes_are_kept_on_the_error(fake):
    with pytest.raises(MmCommandFailed) as raised:
        MmCommands(fake.bin_dir).run("mmdelsnapshot", ["gpfs1", "never-made"])
    assert raised.value.message_codes == ("6027-2683",)


def test_a_missing_or_forbidden_binary_is_a_permanent_error(tmp_path, fake):
    with pytest.raises(MmCommandFailed, match="mmlsfs: not found in .* installed"):
        MmCommands(tmp_path / "no-gpfs-here").run("mmlsfs", ["all", "-Y"])
    (fake.bin_dir / "mmdf").chmod(0o644)  # no execute bit for anyone: EACCES, even for root
    with pytest.raises(AccessDenied):
        MmCommands(fake.bin_dir).run("mmdf", ["gpfs1", "-Y"])


@pytest.mark.parametrize(("command", "args"), [
    ("/bin/sh", ["-c", "true"]), ("../mmlsfs", []), ("mmlsfs; rm", []), ("ls", []), ("mmlsfs", ["a\0b"]),
])
def test_only_mm_command_names_and_string_arguments_are_run(fake, command, args):
    with pytest.raises(PermanentError):
        MmCommands(fake.bin_dir).run(command, args)
    assert fake.calls() == []


def test_helper_settings_are_checked():
    with pytest.raises(ValueError):
        MmCommands("relative/bin")
    with pytest.raises(ValueError):
        MmCommands("/usr/lpp/mmfs/bin", timeout=0)


# --- filesystems, pools, filesets -------------------------------------------------------------------

def test_filesystems_come_from_one_mmlsfs_call_with_their_mount_points(gpfs, fake):
    found = gpfs.filesystems()
    assert [(fs.device, fs.mountpoint) for fs in found] == [("gpfs1", "/gpfs/gpfs1"), ("archive", "/gpfs/archive")]
    assert found[0].attributes["blockSize"] == "4194304"
    assert found[0].attributes["UID"] == "C0A80A0B:617BFC6B"
    assert argv(fake, "mmlsfs") == [["all", "-Y"]]


def test_a_mount_point_missing_from_mmlsfs_all_is_asked_for_with_dash_t(gpfs, fake):
    text = "".join(line + "\n" for line in recorded("mmlsfs_all.txt").read_text().splitlines()
                   if "defaultMountPoint" not in line or ":archive:" in line)
    fake.respond("mmlsfs", ["all", "-Y"], stdout=text)
    assert [fs.mountpoint for fs in gpfs.filesystems()] == ["/gpfs/gpfs1", "/gpfs/archive"]
    assert argv(fake, "mmlsfs") == [["all", "-Y"], ["gpfs1", "-T", "-Y"]]


def test_configured_devices_limit_the_filesystems_and_must_exist(fake, space):
    only = GpfsFilesystem([space], bin_dir=fake.bin_dir, devices=["/dev/archive"])
    assert [fs.device for fs in only.filesystems()] == ["archive"]
    with pytest.raises(PermanentError, match="'gpfs9' is not known"):
        GpfsFilesystem([space], bin_dir=fake.bin_dir, devices=["gpfs9"]).filesystems()


def test_disk_usage_reports_pools_and_totals_in_bytes(gpfs, fake):
    usage = gpfs.disk_usage("gpfs1")
    system, data = usage.pools
    assert (system.name, system.capacity, system.free, system.used, system.is_default) == (
        "system", 2147483648 * KIB, (1879048192 + 10485760) * KIB, (2147483648 - 1889533952) * KIB, True)
    assert (data.name, data.capacity, data.free, data.used, data.is_default) == (
        "data", 214748364800 * KIB, (85899345920 + 1073741824) * KIB, (214748364800 - 86973087744) * KIB, False)
    assert (usage.capacity, usage.free) == (216895848448 * KIB, (87778394112 + 1084227584) * KIB)
    assert usage.used == usage.capacity - usage.free
    assert (usage.inodes_used, usage.inodes_free, usage.inodes_max) == (12345678, 987654, 603979776)
    assert argv(fake, "mmdf") == [["gpfs1", "-Y"]]


def test_the_default_pool_is_system_unless_the_site_names_its_placement_default(fake, space):
    gpfs = GpfsFilesystem([space], bin_dir=fake.bin_dir, default_pools={"gpfs1": "data"})
    assert [(p.name, p.is_default) for p in gpfs.pools("gpfs1")] == [("system", False), ("data", True)]
    assert [(p.name, p.is_default) for p in gpfs.pools("archive")] == [("system", True)]


def test_filesets_carry_junction_status_and_quotas_in_bytes(gpfs, fake):
    filesets = {f.name: f for f in gpfs.filesets("gpfs1")}
    assert list(filesets) == ["root", "projects", "users", "old_project"]
    projects = filesets["projects"]
    assert (projects.filesystem, projects.id, projects.status, projects.path, projects.parent_id) == (
        "gpfs1", 1, "Linked", "/gpfs/gpfs1/projects", 0)
    assert projects.comment == "Project space: climate & ocean"
    assert projects.created is not None and projects.created.replace(tzinfo=None) == datetime(2021, 11, 1, 9, 15, 27)
    assert (projects.inode_space, projects.max_inodes, projects.alloc_inodes) == (1, 20971520, 5251072)
    assert projects.quota == Quota(block_usage=950235440 * KIB, block_soft=4294967296 * KIB,
                                   block_hard=5368709120 * KIB, files_usage=553624, files_soft=5000000,
                                   files_hard=20000000)
    assert projects.quota.block_quota == 5368709120 * KIB and projects.quota.files_quota == 20000000
    assert filesets["users"].quota.block_quota == 1073741824 * KIB  # only a soft limit set
    assert filesets["root"].parent_id is None and filesets["root"].quota.block_quota == 0
    assert (filesets["old_project"].status, filesets["old_project"].path) == ("Unlinked", "")
    assert argv(fake, "mmlsfileset") == [["gpfs1", "-L", "-Y"]]
    assert argv(fake, "mmrepquota") == [["-j", "-Y", "gpfs1"]]


def test_filesets_of_a_filesystem_without_quotas_have_none(gpfs):
    (root,) = gpfs.filesets("archive")
    assert (root.name, root.path, root.quota) == ("root", "/gpfs/archive", None)
    assert "block_quota" not in root.report()


def test_a_busy_quota_report_is_not_mistaken_for_quotas_being_off(gpfs, fake):
    fake.respond("mmrepquota", None, exit=1, stderr="mmrepquota: Another mmrepquota is already running.\n")
    with pytest.raises(TransientError):
        gpfs.filesets("gpfs1")


def test_one_fileset_quota_comes_from_mmlsquota(gpfs, fake):
    quota = gpfs.fileset_quota("gpfs1", "projects")
    assert quota is not None and quota.block_usage == 950235440 * KIB
    assert argv(fake, "mmlsquota") == [["-j", "projects", "-Y", "gpfs1"]]


# --- snapshots --------------------------------------------------------------------------------------

def test_snapshots_are_listed_with_their_fileset(gpfs, fake):
    snaps = gpfs.snapshots("gpfs1")
    assert [(s.name, s.snap_id, s.status, s.fileset) for s in snaps] == [
        ("daily-2024-05-01", 7, "Valid", ""), ("@GMT-2024.05.02-00.00.00", 9, "Valid", "projects")]
    assert snaps[0].created is not None and snaps[0].created.replace(tzinfo=None) == datetime(2024, 5, 1, 0, 30, 2)
    assert [s.name for s in gpfs.snapshots("gpfs1", fileset="projects")] == ["@GMT-2024.05.02-00.00.00"]
    assert argv(fake, "mmlssnapshot") == [["gpfs1", "-Y"], ["gpfs1", "-j", "projects", "-Y"]]
    assert gpfs.snapshots("archive") == []  # "No snapshots in file system archive"


def test_creating_a_snapshot_twice_creates_it_once(gpfs, fake):
    assert gpfs.create_snapshot("gpfs1", "nightly-2024-05-03") is True
    assert gpfs.create_snapshot("gpfs1", "nightly-2024-05-03") is False
    assert argv(fake, "mmcrsnapshot") == [["gpfs1", "nightly-2024-05-03"]]
    assert ("nightly-2024-05-03", "") in fake.snapshot_names()


def test_a_fileset_snapshot_is_created_with_dash_j(gpfs, fake):
    assert gpfs.create_snapshot("gpfs1", "nightly", fileset="projects") is True
    assert gpfs.create_snapshot("gpfs1", "nightly") is True  # a global one of the same name is another snapshot
    assert argv(fake, "mmcrsnapshot") == [["gpfs1", "nightly", "-j", "projects"], ["gpfs1", "nightly"]]
    assert {("nightly", "projects"), ("nightly", "")} <= set(fake.snapshot_names())


def test_deleting_a_snapshot_twice_deletes_it_once(gpfs, fake):
    assert gpfs.delete_snapshot("gpfs1", "daily-2024-05-01") is True
    assert gpfs.delete_snapshot("gpfs1", "daily-2024-05-01") is False
    assert gpfs.delete_snapshot("gpfs1", "@GMT-2024.05.02-00.00.00", fileset="projects") is True
    assert argv(fake, "mmdelsnapshot") == [["gpfs1", "daily-2024-05-01"],
                                           ["gpfs1", "@GMT-2024.05.02-00.00.00", "-j", "projects"]]
    assert fake.snapshot_names() == []


def test_a_snapshot_another_agent_created_meanwhile_counts_as_existing(gpfs, fake):
    # Our listing misses it; the create then fails because it exists; the re-check sees it.
    fake.respond("mmlssnapshot", ["gpfs1", "-Y"], stdout="No snapshots in file system gpfs1\n", times=1)
    assert gpfs.create_snapshot("gpfs1", "daily-2024-05-01") is False
    assert argv(fake, "mmcrsnapshot") == [["gpfs1", "daily-2024-05-01"]]


def test_a_snapshot_deleted_meanwhile_by_another_agent_counts_as_deleted(gpfs, fake):
    fake.respond("mmdelsnapshot", None, exit=1, stderr="mmdelsnapshot: Snapshot daily-2024-05-01 is gone.\n")
    fake.respond("mmlssnapshot", ["gpfs1", "-Y"], stdout="No snapshots in file system gpfs1\n")
    fake.respond("mmlssnapshot", ["gpfs1", "-Y"], stdout_file=str(recorded("mmlssnapshot_gpfs1.txt")), times=1)
    assert gpfs.delete_snapshot("gpfs1", "daily-2024-05-01") is False


def test_a_snapshot_create_that_really_fails_raises(gpfs, fake):
    fake.respond("mmcrsnapshot", None, exit=22, stderr="mmcrsnapshot: 6027-2611 Cannot create snapshot: "
                 "maximum number of snapshots reached.\n")
    with pytest.raises(MmCommandFailed, match="mmcrsnapshot failed with exit code 22: .*maximum number"):
        gpfs.create_snapshot("gpfs1", "one-too-many")


def test_a_busy_snapshot_create_is_transient(gpfs, fake):
    fake.respond("mmcrsnapshot", None, exit=1, stderr="Unable to quiesce all nodes; some processes are busy.\n")
    with pytest.raises(TransientError):
        gpfs.create_snapshot("gpfs1", "nightly")


@pytest.mark.parametrize("name", ["-j", "a/b", "two words", "", "x" * 256, "new\nline", "projects:snap"])
def test_names_that_could_be_options_or_paths_are_refused_before_any_command_runs(gpfs, fake, name):
    with pytest.raises(PermanentError, match="invalid"):
        gpfs.create_snapshot("gpfs1", name)
    with pytest.raises(PermanentError, match="invalid"):
        gpfs.snapshots(name)
    assert fake.calls() == []


# --- policy scans -----------------------------------------------------------------------------------

def test_policy_list_records_decode_every_kind_of_name():
    with open(recorded("scan.list.hubscan"), "rb") as lines:
        records = list(parse_policy_list(lines))
    base = "/gpfs/gpfs1/projects/climate"
    assert [r.path for r in records] == [
        base, f"{base}/report 2024.pdf", f"{base}/naïve/données.csv", f"{base}/line\nbreak.txt",
        f"{base}/100%_done -- final.txt", f"{base}/latest", os.fsdecode(f"{base}/latin1-".encode() + b"\xe9.bin"),
        f"{base}/big.nc", f"{base}/odd.dat", f"{base}/tool"]
    assert (records[1].inode, records[1].generation, records[1].snap_id) == (524301, 95184520, 0)
    assert records[1].show.startswith("1048576|1024|1001|1001|-rw-r-----|1|FAu|2024-05-01 10:00:00.123456|")


def test_policy_list_lines_without_show_and_unescaped_lists_parse_too():
    records = list(parse_policy_list([b"12 34 0  -- /gpfs/a b\n"], escaped=False))
    assert records == [ListRecord(12, 34, 0, "", "/gpfs/a b")]


@pytest.mark.parametrize("line", [b"12 34 -- /x\n", b"12 34 0 show /x\n", b"a b c -- /x\n", b"1 2 3 4 5 -- /x\n"])
def test_malformed_policy_list_lines_are_refused(line):
    with pytest.raises(MmOutputError):
        list(parse_policy_list([line]))


@pytest.mark.parametrize(("text", "mode"), [
    ("-rw-r-----", stat.S_IFREG | 0o640), ("drwxrwsr-x", stat.S_IFDIR | 0o2775), ("lrwxrwxrwx", stat.S_IFLNK | 0o777),
    ("-rwsr-x--T", stat.S_IFREG | 0o5750), ("-rwSr--r-t", stat.S_IFREG | 0o5645),
])
def test_mode_text_becomes_mode_bits(text, mode):
    assert parse_mode(text) == mode


@pytest.mark.parametrize("text", ["rw-r--r--", "-rw-r--r-x-", "-rw-r--r-q", "?rw-r--r--"])
def test_bad_mode_text_is_refused(text):
    with pytest.raises(MmOutputError):
        parse_mode(text)


def test_scan_entries_carry_attributes_kind_and_hsm_state():
    with open(recorded("scan.list.hubscan"), "rb") as lines:
        entries = {os.path.basename(e.path): e for e in map(scan_entry, parse_policy_list(lines))}
    report = entries["report 2024.pdf"]
    assert (report.kind, report.size, report.kb_allocated, report.uid, report.gid, report.mode, report.nlink) == (
        EntryKind.FILE, 1048576, 1024, 1001, 1001, 0o640, 1)
    assert (report.pool, report.fileset, report.misc) == ("data", "projects", "FAu")
    assert report.modified == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert report.state == HsmState.PREMIGRATED and report.record.key == "climate/report 2024.pdf"
    big = entries["big.nc"]
    assert (big.state, big.record.size, big.kb_allocated) == (HsmState.MIGRATED, 10737418240, 0)
    assert entries["climate"].kind == EntryKind.DIRECTORY and entries["latest"].kind == EntryKind.SYMLINK
    assert entries["données.csv"].state == HsmState.UNMANAGED and entries["données.csv"].record is None
    assert entries["odd.dat"].state == HsmState.UNMANAGED and "bad HSM record" in entries["odd.dat"].error
    assert entries["tool"].mode == 0o5750


def test_a_scan_record_with_the_wrong_number_of_attributes_is_refused():
    with pytest.raises(MmOutputError, match="attributes"):
        scan_entry(ListRecord(1, 2, 0, "1|2|3", "/gpfs/x"))


def test_scan_rules_escape_names_and_show_the_scanned_attributes():
    rules = scan_rules(directories=True, filesets=["projects", "users"], where="FILE_SIZE > 0")
    assert "RULE EXTERNAL LIST 'hubscan' EXEC '' ESCAPE '%/'" in rules
    assert "RULE 'hubscan' LIST 'hubscan' DIRECTORIES_PLUS FOR FILESET ('projects', 'users')" in rules
    assert all(f"VARCHAR({name})" in rules for name in SCAN_FIELDS)
    assert "CASE WHEN XATTR('user.hub.hsm') IS NULL THEN '' ELSE XATTR('user.hub.hsm') END" in rules
    assert rules.rstrip().endswith("WHERE FILE_SIZE > 0")
    assert "XATTR" not in scan_rules(hsm_state=False)
    with pytest.raises(PermanentError):
        scan_rules(list_name="x' EXEC '/bin/sh")


def test_a_policy_scan_runs_mmapplypolicy_deferred_and_parses_its_list(gpfs, fake, space):
    (space / "projects").mkdir()
    with gpfs.policy_scan(space / "projects", directories=True) as scan:
        entries = list(scan.entries())
        work = os.path.dirname(scan.lists["hubscan"])
        assert os.path.isdir(work)
    assert len(entries) == 10 and entries[1].path.endswith("/report 2024.pdf")
    (args,) = argv(fake, "mmapplypolicy")
    assert args == [str(space / "projects"), "-P", os.path.join(work, "rules.pol"), "-I", "defer",
                    "-f", os.path.join(work, "scan"), "-L", "0"]
    rules = fake.calls("mmapplypolicy")[0]["rules_text"]
    assert "ESCAPE '%/'" in rules and "DIRECTORIES_PLUS" in rules
    assert not os.path.exists(work)  # the list files and rules are gone with the with-block


def test_a_snapshot_scan_passes_dash_s_and_a_stream_cleans_up_when_done(gpfs, fake, space):
    found = list(gpfs.scan(space, snapshot="daily-2024-05-01", nodes="nsd1,nsd2"))
    assert [e.inode for e in found][:2] == [524300, 524301]
    (args,) = argv(fake, "mmapplypolicy")
    assert args[0] == str(space) and args[-4:] == ["-S", "daily-2024-05-01", "-N", "nsd1,nsd2"]
    assert not os.path.exists(os.path.dirname(args[2]))


def test_a_scan_that_matched_nothing_has_no_entries(gpfs, fake, space):
    fake.set_policy_list("hubscan", None)  # mmapplypolicy writes no list when no file matched
    with gpfs.policy_scan(space) as scan:
        assert list(scan.entries()) == [] and scan.lists == {}


def test_a_scan_outside_the_space_roots_is_refused_without_running_anything(gpfs, fake, tmp_path):
    with pytest.raises(PathRefused):
        with gpfs.policy_scan(tmp_path):
            pass
    assert fake.calls() == []


def test_a_scan_that_overruns_its_time_is_transient_and_leaves_nothing_behind(gpfs, fake, space, tmp_path):
    fake.respond("mmapplypolicy", None, sleep=120)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(TransientError):
        with gpfs.policy_scan(space, timeout=1, work_dir=work):
            pass
    assert os.listdir(work) == []


# --- inventory --------------------------------------------------------------------------------------

def test_inventory_reports_filesystems_pools_and_filesets_for_the_hub(gpfs):
    parts = gpfs.inventory()
    assert parts["filesystems"] == [
        {"name": "gpfs1", "mountpoint": "/gpfs/gpfs1", "fstype": "gpfs", "capacity": 216895848448 * KIB,
         "used_space": (216895848448 - 87778394112 - 1084227584) * KIB,
         "free_space": (87778394112 + 1084227584) * KIB},
        {"name": "archive", "mountpoint": "/gpfs/archive", "fstype": "gpfs", "capacity": 1099511627776 * KIB,
         "used_space": (1099511627776 - 659706976665 - 2147483648) * KIB,
         "free_space": (659706976665 + 2147483648) * KIB},
    ]
    assert [(p["filesystem"], p["name"], p["is_default"]) for p in parts["pools"]] == [
        ("gpfs1", "system", True), ("gpfs1", "data", False), ("archive", "system", True)]
    assert parts["pools"][1]["capacity"] == 214748364800 * KIB
    assert parts["filesets"][1] == {
        "filesystem": "gpfs1", "name": "projects", "path": "/gpfs/gpfs1/projects", "status": "Linked",
        "block_quota": 5368709120 * KIB, "block_usage": 950235440 * KIB, "files_quota": 20000000,
        "files_usage": 553624}
    assert parts["filesets"][4] == {"filesystem": "archive", "name": "root", "path": "/gpfs/archive",
                                    "status": "Linked"}
    assert len(parts["filesets"]) == 5


def test_inventory_fails_whole_rather_than_reporting_part_of_the_site(gpfs, fake):
    fake.respond("mmdf", ["archive", "-Y"], exit=1, stderr="mmdf: File system archive is not mounted.\n")
    with pytest.raises(PermanentError, match="mmdf failed with exit code 1"):
        gpfs.inventory()


# --- the inherited POSIX HSM operations -----------------------------------------------------------------

def test_the_gpfs_driver_migrates_and_recalls_files_like_the_posix_driver(gpfs, space):
    assert isinstance(gpfs, PosixFilesystem)
    store = MemoryStore("gpfs-target")
    path = write_random(space / "projects" / "data.bin", 3 * CHUNK + 17, seed=7)
    digest = sha256_file(path)
    result = gpfs.migrate(path, store)
    assert result.status == ResultStatus.PROCESSED, result.message
    assert read_record(path).state == HsmState.MIGRATED and path.stat().st_blocks * 512 <= 8192
    assert gpfs.migrate(path, store).status == ResultStatus.SKIPPED  # twice equals once
    assert gpfs.stat(path).state == HsmState.MIGRATED
    result = gpfs.recall(path, store)
    assert result.status == ResultStatus.PROCESSED, result.message
    assert sha256_file(path) == digest and read_record(path).state == HsmState.HYDRATED
    assert gpfs.recall(path, store).status == ResultStatus.SKIPPED
