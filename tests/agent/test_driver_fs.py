"""The driver contract on a POSIX folder (both metadata modes), and what only a folder can get wrong:
keys that would escape it, symlinks planted in it, leftovers of interrupted writes."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from agent.drivers.base import AlreadyExists, NotFound, PermanentError
from agent.drivers.fs import TMP_PREFIX, XATTR_NAME, FolderStore
from agent.drivers.registry import open_store
from tests.agent.driver_contract import DriverContract, Generated, SourceBroke, list_all, put_bytes, read_all

pytestmark = pytest.mark.smoke


class TestFolderStoreWithXattrs(DriverContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FolderStore:
        root = tmp_path / "target"
        root.mkdir()
        store = open_store({"storage_type": "fs", "migration_target_folder": str(root),
                            "advanced_settings": {"metadata": "xattr", "chunk_size": 1024 * 1024}})
        assert isinstance(store, FolderStore)
        return store


class TestFolderStoreWithSidecars(DriverContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FolderStore:
        root = tmp_path / "target"
        root.mkdir()
        return FolderStore(root, metadata="sidecar", chunk_size=1024 * 1024)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "target"
    path.mkdir()
    return path


@pytest.fixture
def store(root: Path) -> FolderStore:
    return FolderStore(root)


def test_objects_are_plain_files_under_the_folder(store: FolderStore, root: Path):
    put_bytes(store, "space/dir/file name.txt", b"hello", metadata={"sha256": "00"})
    assert (root / "space" / "dir" / "file name.txt").read_bytes() == b"hello"
    assert os.getxattr(root / "space" / "dir" / "file name.txt", XATTR_NAME) == b'{"sha256": "00"}'
    assert sorted(p.name for p in root.rglob("*")) == ["dir", "file name.txt", "space"]


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "a/./b", "a//b", "a/", "./a", "..", ".",
                                 ".hub-tmp-x", "a/.hub-meta-y", "x" * 256])
def test_keys_that_could_escape_or_collide_are_refused(store: FolderStore, root: Path, key: str):
    with pytest.raises(PermanentError):
        put_bytes(store, key, b"x")
    with pytest.raises(PermanentError):
        store.head(key)
    with pytest.raises(PermanentError):
        store.delete(key)
    assert list(root.parent.iterdir()) == [root]
    assert list(root.iterdir()) == []


def test_a_symlink_inside_the_folder_is_never_followed(store: FolderStore, root: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "secret")
    with pytest.raises(PermanentError):
        put_bytes(store, "link/planted", b"x")
    with pytest.raises(NotFound):
        store.open_read("link/secret")
    with pytest.raises(NotFound):
        store.head("file-link")
    store.delete("link/secret")
    store.delete("file-link")
    assert (outside / "secret").read_bytes() == b"secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert store.list().objects == [] and store.list(delimiter="/").prefixes == []


def test_a_missing_folder_is_not_found_unless_it_may_be_created(tmp_path: Path):
    missing = FolderStore(tmp_path / "missing")
    for call in (lambda: put_bytes(missing, "k", b"x"), missing.list, lambda: missing.head("k"),
                 lambda: missing.delete("k")):
        with pytest.raises(NotFound):
            call()
    created = FolderStore(tmp_path / "created", create_folder=True)
    put_bytes(created, "k", b"x")
    assert (tmp_path / "created" / "k").read_bytes() == b"x"


def test_a_key_cannot_be_both_an_object_and_a_folder(store: FolderStore):
    put_bytes(store, "a/b", b"x")
    with pytest.raises(PermanentError):
        put_bytes(store, "a", b"y")
    put_bytes(store, "c", b"x")
    with pytest.raises(PermanentError):
        put_bytes(store, "c/d", b"y")
    with pytest.raises(NotFound):
        store.head("a")
    assert read_all(store, "c") == b"x"


def test_a_failed_write_leaves_no_temporary_file(store: FolderStore, root: Path):
    put_bytes(store, "dir/keep", b"keep")
    with pytest.raises(SourceBroke):
        store.put("dir/keep", Generated(3 * 1024 * 1024, fail_after=1024 * 1024))
    with pytest.raises(AlreadyExists):
        put_bytes(store, "dir/keep", b"other", if_absent=True)
    assert sorted(p.name for p in (root / "dir").iterdir()) == ["keep"]


def test_leftovers_of_a_crash_are_hidden_from_listings(store: FolderStore, root: Path):
    put_bytes(store, "dir/real", b"x")
    (root / "dir" / f"{TMP_PREFIX}0123abcd").write_bytes(b"partial")
    (root / f"{TMP_PREFIX}dir").mkdir()
    assert [info.key for info in store.list().objects] == ["dir/real"]
    assert store.list(delimiter="/").prefixes == ["dir/"]


def test_deleting_the_last_object_of_a_folder_prunes_empty_folders(store: FolderStore, root: Path):
    put_bytes(store, "a/b/c/d", b"x")
    put_bytes(store, "a/keep", b"x")
    store.delete("a/b/c/d")
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["a", "a/keep"]


def test_empty_folders_are_not_listed_as_prefixes(store: FolderStore, root: Path):
    (root / "empty" / "deeper").mkdir(parents=True)
    put_bytes(store, "full/x", b"x")
    assert store.list(delimiter="/").prefixes == ["full/"]


def test_listing_skips_files_whose_names_are_not_utf8(store: FolderStore, root: Path):
    put_bytes(store, "ok", b"x")
    with open(os.path.join(os.fsencode(root), b"bad-\xff-name"), "wb") as handle:
        handle.write(b"x")
    assert [info.key for info in store.list().objects] == ["ok"]


def test_sidecar_metadata_applies_only_to_the_file_it_was_written_for(root: Path):
    store = FolderStore(root, metadata="sidecar")

    def sidecars() -> list[str]:
        return sorted(p.name for p in root.iterdir() if p.name.startswith(".hub-meta-"))

    put_bytes(store, "k", b"one", metadata={"v": "1"})
    assert len(sidecars()) == 1
    # The file is replaced behind the driver's back (as a crash between the sidecar's rename and
    # the data's would leave it): the old inode's metadata must not describe the new content.
    os.link(root / "k", root / "old")  # keeps the old inode alive, so its number is not reused
    (root / "k.new").write_bytes(b"two")
    os.rename(root / "k.new", root / "k")
    assert store.head("k").metadata == {}
    assert store.head("old").metadata == {}, "a sidecar belongs to one name"
    put_bytes(store, "k", b"three", metadata={"v": "3"})
    assert store.head("k").metadata == {"v": "3"}
    store.delete("k")
    assert len(sidecars()) == 1, "only the orphan of the replaced file is left"
    assert [info.key for info in store.list().objects] == ["old"]


def test_auto_mode_uses_xattrs_where_the_filesystem_has_them(root: Path):
    store = FolderStore(root)
    put_bytes(store, "k", b"x", metadata={"a": "1"})
    assert os.getxattr(root / "k", XATTR_NAME) == b'{"a": "1"}'
    assert not [p for p in root.iterdir() if p.name.startswith(".hub-")]


def test_from_bucket_reads_the_folder_and_settings(root: Path):
    store = FolderStore.from_bucket({"migration_target_folder": str(root),
                                     "advanced_settings": {"fsync": "false", "metadata": "sidecar"}})
    assert store.fsync is False and store.root == str(root)
    assert "FolderStore" in repr(store)
    for bad in ({"migration_target_folder": ""}, {"migration_target_folder": "relative/path"},
                {"migration_target_folder": str(root), "advanced_settings": {"metadata": "bogus"}},
                {"migration_target_folder": str(root), "advanced_settings": {"fsync": "maybe"}}):
        with pytest.raises(PermanentError):
            FolderStore.from_bucket(bad)


def test_deep_paging_does_not_revisit_folders(store: FolderStore):
    keys = [f"d{i:02d}/f{j:02d}" for i in range(12) for j in range(5)]
    for key in keys:
        store.put(key, io.BytesIO(b""))
    found, _, pages = list_all(store, max_items=7)
    assert found == keys and pages == 9
    _, prefixes, _ = list_all(store, delimiter="/", max_items=5)
    assert prefixes == [f"d{i:02d}/" for i in range(12)]


def test_puts_and_deletes_racing_in_one_folder_never_fail(store: FolderStore):
    """A delete prunes a folder that another thread is about to write into: the put starts over."""
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            for round_ in range(40):
                key = f"shared/deeper/{number}-{round_}"
                put_bytes(store, key, b"x")
                store.delete(key)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert store.list().objects == []

