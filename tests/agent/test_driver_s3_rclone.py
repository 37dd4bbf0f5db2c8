"""The driver contract on ``rclone serve s3``: a real on-disk S3 server that enforces signatures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.base import AccessDenied
from agent.drivers.registry import open_store
from agent.drivers.s3 import S3Store
from tests.agent import servers
from tests.agent.conftest import unique_name
from tests.agent.driver_contract import DriverContract, put_bytes
from tests.agent.s3_helpers import assert_s3_multipart, new_store, s3_bucket

pytestmark = pytest.mark.emulators


class TestS3OnRclone(DriverContract):
    # rclone keeps an object's modification time as "mtime" metadata of its own (copies show it).
    extra_metadata = frozenset({"mtime"})
    # rclone ignores If-None-Match: if_absent is only checked before the upload there (best effort,
    # as the S3 driver documents), so two racing writers can both succeed.
    test_if_absent_lets_exactly_one_racing_writer_win = None
    # rclone's CopyObject with MetadataDirective=REPLACE merges the new metadata into the source's
    # instead of replacing it (see test_rclone_copy_merges_metadata below); moto proves the driver
    # asks for REPLACE.
    test_copy_with_new_metadata_replaces_it = None
    test_copy_with_empty_metadata_clears_it = None
    # rclone counts more than names and values towards S3's 2 KB (MetadataTooLarge from ~1.75 KB).
    metadata_capacity = 1536
    # Parts of PART_SIZE (5 MiB, S3's minimum) and two in flight: a bigger probe and bound.
    memory_probe = 96 * 1024 * 1024
    memory_bound = 40 * 1024 * 1024

    @pytest.fixture
    def store(self, rclone_server: servers.Server) -> Iterator[S3Store]:
        store = new_store(rclone_server, unique_name())
        yield store
        store.close()

    def assert_multipart(self, store: S3Store, key: str) -> None:
        assert_s3_multipart(store, key)


def test_objects_are_files_on_the_servers_disk(rclone_server: servers.Server):
    store = new_store(rclone_server, unique_name())
    put_bytes(store, "dir/with space/ünï.bin", b"on disk")
    path = Path(rclone_server.extra["data_dir"]) / store.bucket / "dir" / "with space" / "ünï.bin"
    assert path.read_bytes() == b"on disk"


def test_a_wrong_secret_is_access_denied(rclone_server: servers.Server):
    name = unique_name()
    new_store(rclone_server, name)
    bucket = s3_bucket(rclone_server, name, max_attempts=1)
    bucket["secret_access_key"] = "not-the-secret"
    store = open_store(bucket)
    with pytest.raises(AccessDenied) as raised:
        put_bytes(store, "k", b"x")
    assert "not-the-secret" not in str(raised.value)
    with pytest.raises(AccessDenied):
        store.list()


def test_rclone_copy_merges_metadata_instead_of_replacing_it(rclone_server: servers.Server):
    """A known limit of the test server, pinned so that a fixed rclone is noticed."""
    store = new_store(rclone_server, unique_name())
    put_bytes(store, "src", b"x", metadata={"sha256": "00ff"})
    store.copy("src", "dst", metadata={"state": "migrated"})
    metadata = dict(store.head("dst").metadata)
    metadata.pop("mtime", None)
    assert metadata == {"sha256": "00ff", "state": "migrated"}
