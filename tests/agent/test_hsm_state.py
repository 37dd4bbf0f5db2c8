"""The HSM record (one xattr, strict schema, legal transitions) and the object metadata map."""

from __future__ import annotations

import json
import os

import pytest

from agent.hsm.metadata import (
    MAX_PATH_CHARS,
    MetadataError,
    ObjectMetadata,
    has_hub_metadata,
    parse_metadata,
    to_metadata,
)
from agent.hsm.state import (
    TRANSITIONS,
    XATTR_NAME,
    HsmRecord,
    HsmState,
    HsmStateError,
    Pending,
    check_transition,
    clear_record,
    read_record,
    write_record,
)

pytestmark = pytest.mark.smoke
SHA = "ab" * 32


def record(**changes) -> HsmRecord:
    fields = dict(state=HsmState.PREMIGRATED, target="s3-main", key="proj/a.bin", sha256=SHA, size=10,
                  mtime_ns=1_700_000_000_123_456_789, inode=42, ctime_ns=1_700_000_001_000_000_000)
    fields.update(changes)
    return HsmRecord(**fields)


@pytest.fixture
def fd(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    handle = os.open(path, os.O_RDWR)
    yield handle
    os.close(handle)


def test_record_round_trips_through_one_xattr(fd):
    rec = record(version="v3", stub_size=4, pending=Pending.STUB)
    write_record(fd, rec)
    assert read_record(fd) == rec
    assert os.listxattr(fd) == [XATTR_NAME]
    assert json.loads(os.getxattr(fd, XATTR_NAME))["v"] == 1


def test_missing_xattr_reads_as_unmanaged_and_clearing_twice_is_a_noop(fd):
    assert read_record(fd) is None
    write_record(fd, record())
    clear_record(fd)
    clear_record(fd)
    assert read_record(fd) is None


def test_record_is_read_by_path_without_following_symlinks(tmp_path, fd):
    write_record(fd, record())
    os.symlink(tmp_path / "f", tmp_path / "link")
    assert read_record(tmp_path / "f") == record()
    assert read_record(tmp_path / "link") is None


def test_rewriting_the_record_replaces_it_whole(fd):
    write_record(fd, record(version="v1", stub_size=3))
    write_record(fd, record())
    assert read_record(fd) == record()


@pytest.mark.parametrize("raw", [
    b"not json",
    b"[]",
    b'{"v": 2}',
    json.dumps({**json.loads(record().to_bytes()), "extra": 1}).encode(),
    json.dumps({k: v for k, v in json.loads(record().to_bytes()).items() if k != "sha256"}).encode(),
    json.dumps({**json.loads(record().to_bytes()), "size": "10"}).encode(),
    json.dumps({**json.loads(record().to_bytes()), "size": True}).encode(),
    json.dumps({**json.loads(record().to_bytes()), "state": "frozen"}).encode(),
    json.dumps({**json.loads(record().to_bytes()), "state": "unmanaged"}).encode(),
    json.dumps({**json.loads(record().to_bytes()), "sha256": "AB" * 32}).encode(),
    json.dumps({**json.loads(record().to_bytes()), "stub_size": 11}).encode(),
    "é".encode(),
], ids=["garbage", "array", "future-schema", "unknown-field", "missing-field", "string-int", "bool-int",
        "unknown-state", "unmanaged-stored", "upper-hex", "stub-larger-than-file", "non-ascii"])
def test_malformed_records_are_rejected_not_guessed(fd, raw):
    os.setxattr(fd, XATTR_NAME, raw)
    with pytest.raises(HsmStateError):
        read_record(fd)


LEGAL = [(old, new) for old, news in TRANSITIONS.items() for new in sorted(news)]
ILLEGAL = [(old, new) for old in HsmState for new in HsmState if old != new and new not in TRANSITIONS[old]]


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_legal_transition_is_allowed(old, new):
    check_transition(old, new)


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_illegal_transition_is_refused(old, new):
    with pytest.raises(HsmStateError):
        check_transition(old, new)


def test_a_stub_can_never_become_unmanaged_directly():
    # Its remote copy is the only one: dropping the record would orphan the bytes.
    assert HsmState.UNMANAGED not in TRANSITIONS[HsmState.MIGRATED]
    with pytest.raises(HsmStateError):
        record(state=HsmState.MIGRATED).moved_to(HsmState.PREMIGRATED)


def test_moved_to_applies_changes_and_keeps_the_rest():
    moved = record().moved_to(HsmState.MIGRATED, pending=Pending.STUB, stub_size=4)
    assert (moved.state, moved.pending, moved.stub_size) == (HsmState.MIGRATED, Pending.STUB, 4)
    assert moved.key == "proj/a.bin"


def meta(**changes) -> ObjectMetadata:
    fields = dict(sha256=SHA, size=10, mode=0o2750, uid=1000, gid=100, mtime_ns=1_700_000_000_123_456_789,
                  atime_ns=-5, path="dir/naïve file.txt", inode=7, ctime_ns=9)
    fields.update(changes)
    return ObjectMetadata(**fields)


def test_metadata_is_a_flat_lower_case_ascii_map_that_parses_back():
    flat = to_metadata(meta())
    assert all(k.isascii() and k.islower() and k.isalnum() for k in flat)
    assert all(isinstance(v, str) and v.isascii() for v in flat.values())
    assert flat["hubmode"] == "2750"
    assert parse_metadata(flat) == meta()
    assert has_hub_metadata(flat)


def test_metadata_survives_stores_that_capitalise_names_and_add_their_own():
    flat = {k.title(): v for k, v in to_metadata(meta()).items()} | {"content-type": "x", "other": "y"}
    assert parse_metadata(flat) == meta()


def test_undecodable_file_names_round_trip_through_metadata():
    name = os.fsdecode(b"dir/caf\xe9 \xff.bin")
    assert parse_metadata(to_metadata(meta(path=name))).path == name


def test_very_long_paths_are_left_out_to_fit_store_metadata_limits():
    flat = to_metadata(meta(path="x" * (MAX_PATH_CHARS + 1)))
    assert "hubpath" not in flat
    assert parse_metadata(flat).path is None
    assert sum(len(k) + len(v) for k, v in flat.items()) < 2048


@pytest.mark.parametrize(("name", "value"), [
    ("hubmeta", "2"), ("hubsha256", "AB" * 32), ("hubsha256", "ab"), ("hubsize", "-1"), ("hubsize", "01"),
    ("hubsize", "1e3"), ("hubmode", "644"), ("hubmode", "0648"), ("hubuid", " 1"), ("hubmtimens", "1.5"),
    ("hubpath", "../etc/passwd"), ("hubpath", "/abs"), ("hubpath", "a b"), ("hubpath", "a%zz"),
    ("hubpath", "a//b"),
])
def test_malformed_metadata_values_are_rejected(name, value):
    flat = to_metadata(meta())
    flat[name] = value
    with pytest.raises(MetadataError):
        parse_metadata(flat)


def test_metadata_without_a_required_field_is_rejected():
    flat = to_metadata(meta())
    del flat["hubgid"]
    with pytest.raises(MetadataError):
        parse_metadata(flat)
    assert not has_hub_metadata({"content-type": "x"})
