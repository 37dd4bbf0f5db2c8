"""The contract every object-store driver keeps, as a base class run once per backend.

A backend's test module subclasses ``DriverContract`` and provides a ``store`` fixture: a driver
on a fresh, empty bucket (container, folder), configured with a small part size so that
``LARGE`` bytes really go through the multipart/chunked path. Backend-specific hooks:

* ``assert_multipart(store, key)`` proves the large upload was split into parts.
* ``extra_metadata`` names metadata a server adds by itself (ignored in comparisons).
* ``metadata_capacity`` is how many bytes of metadata names and values the server takes (the
  drivers' common limit, ``MAX_METADATA_BYTES``, unless the server is stricter).
* ``memory_bound`` caps the peak of Python allocations (tracemalloc) while a ``memory_probe``-
  byte object is uploaded from a stream and read back.

Tests that do not apply to a backend are switched off by setting them to None in the subclass
(never by skipping: CI counts a skip as a failure).
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import tracemalloc
from typing import ClassVar

import pytest

from agent.drivers.base import MAX_METADATA_BYTES, AlreadyExists, NotFound, ObjectStore, PermanentError

KiB = 1024
MiB = 1024 * KiB
LARGE = 11 * MiB + 12_345  # three parts at S3's minimum part size of 5 MiB

UNICODE_KEYS = [
    "with space/file name.txt",
    "ünïcødé/日本語のファイル.bin",
    "emoji 😀/ok.dat",
    "punctuation/a+b=c&d;e,f@g$h!i'(j).txt",
    "percent/100%25 sure %.txt",
]


def pattern(size: int, seed: int = 1) -> bytes:
    """Reproducible incompressible bytes."""
    return random.Random(seed).randbytes(size)


class Generated(io.RawIOBase):
    """A non-seekable stream of ``size`` reproducible bytes, made as it is read (bounded memory).

    With ``fail_after`` it raises ``SourceBroke`` once that many bytes were handed out, the way a
    file read fails midway.
    """

    def __init__(self, size: int, *, seed: int = 1, fail_after: int | None = None, block: int = 256 * KiB) -> None:
        super().__init__()
        self.size = size
        self.fail_after = fail_after
        self.sent = 0
        self._rng = random.Random(seed)
        self._block = block
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise SourceBroke(f"source failed after {self.sent} bytes")
        want = min(len(buffer), self.size - self.sent)
        if self.fail_after is not None:
            want = min(want, self.fail_after - self.sent) or 1
        if want <= 0:
            return 0
        if not self._pending:
            self._pending = self._rng.randbytes(min(self._block, self.size - self.sent))
        n = min(want, len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.sent += n
        return n


class SourceBroke(OSError):
    """What a ``Generated`` stream raises when told to fail."""


def generated_sha256(size: int, seed: int = 1) -> str:
    digest = hashlib.sha256()
    stream = Generated(size, seed=seed)
    while chunk := stream.read(MiB):
        digest.update(chunk)
    return digest.hexdigest()


def read_all(store: ObjectStore, key: str, **kwargs: int) -> bytes:
    with store.open_read(key, **kwargs) as stream:
        return stream.read()


def list_all(store: ObjectStore, prefix: str = "", *, max_items: int = 1000,
             delimiter: str | None = None) -> tuple[list[str], list[str], int]:
    """Every key and prefix, following ``next_marker``; also the number of pages."""
    keys: list[str] = []
    prefixes: list[str] = []
    marker = ""
    for pages in range(1, 1000):
        page = store.list(prefix, marker=marker, max_items=max_items, delimiter=delimiter)
        assert len(page.objects) + len(page.prefixes) <= max_items
        keys += [info.key for info in page.objects]
        prefixes += page.prefixes
        if page.next_marker is None:
            return keys, prefixes, pages
        assert page.objects or page.prefixes, "a page with a next_marker must not be empty"
        marker = page.next_marker
    raise AssertionError("listing did not end")


def put_bytes(store: ObjectStore, key: str, data: bytes, **kwargs: object) -> None:
    store.put(key, io.BytesIO(data), size=len(data), **kwargs)  # type: ignore[arg-type]


class DriverContract:
    """The driver contract (see the module docstring). Subclasses provide the ``store`` fixture."""

    extra_metadata: ClassVar[frozenset[str]] = frozenset()
    memory_bound: ClassVar[int] = 24 * MiB
    metadata_capacity: ClassVar[int] = MAX_METADATA_BYTES
    memory_probe: ClassVar[int] = 64 * MiB

    def assert_multipart(self, store: ObjectStore, key: str) -> None:
        """Backends override this to prove the large object went up in several parts."""

    def twin(self, store: ObjectStore) -> ObjectStore:
        """A store on the same bucket for another thread (the same one where drivers are thread-safe)."""
        return store

    def assert_metadata(self, store: ObjectStore, key: str, expected: dict[str, str]) -> None:
        """``head``'s metadata is ``expected`` (names in ``extra_metadata`` that the test did not
        set itself are ignored)."""
        actual = {k: v for k, v in store.head(key).metadata.items()
                  if k in expected or k not in self.extra_metadata}
        assert actual == expected

    # --- round trips ----------------------------------------------------------------------------

    def test_empty_object_round_trips(self, store: ObjectStore) -> None:
        info = store.put("empty", io.BytesIO(b""), size=0)
        assert info.size == 0
        assert read_all(store, "empty") == b""
        assert store.head("empty").size == 0
        assert list(store.iter_read("empty")) == []

    def test_one_byte_object_round_trips(self, store: ObjectStore) -> None:
        store.put("one", io.BytesIO(b"\x00"))
        assert read_all(store, "one") == b"\x00"
        assert store.head("one").size == 1

    def test_multipart_sized_object_round_trips_from_a_stream(self, store: ObjectStore) -> None:
        info = store.put("large/object.bin", Generated(LARGE), metadata={"sha256": generated_sha256(LARGE)})
        assert info.size == LARGE
        self.assert_multipart(store, "large/object.bin")
        digest = hashlib.sha256()
        total = 0
        for chunk in store.iter_read("large/object.bin", chunk_size=MiB):
            assert len(chunk) <= MiB
            digest.update(chunk)
            total += len(chunk)
        assert total == LARGE
        assert digest.hexdigest() == generated_sha256(LARGE)
        assert store.head("large/object.bin").size == LARGE

    def test_multipart_sized_object_with_declared_size_round_trips(self, store: ObjectStore) -> None:
        data = pattern(LARGE, seed=7)
        store.put("large/declared.bin", io.BytesIO(data), size=len(data))
        self.assert_multipart(store, "large/declared.bin")
        assert hashlib.sha256(read_all(store, "large/declared.bin")).digest() == hashlib.sha256(data).digest()

    def test_unicode_and_space_keys_round_trip(self, store: ObjectStore) -> None:
        for number, key in enumerate(UNICODE_KEYS):
            put_bytes(store, key, f"content {number}".encode())
        for number, key in enumerate(UNICODE_KEYS):
            assert read_all(store, key) == f"content {number}".encode()
            assert store.head(key).key == key
        keys, _, _ = list_all(store)
        assert keys == sorted(UNICODE_KEYS)

    def test_overwrite_replaces_bytes_and_metadata(self, store: ObjectStore) -> None:
        put_bytes(store, "k", b"first", metadata={"version": "1"})
        put_bytes(store, "k", b"second version")
        assert read_all(store, "k") == b"second version"
        assert store.head("k").size == len(b"second version")
        self.assert_metadata(store, "k", {})

    # --- ranged reads ---------------------------------------------------------------------------

    def test_ranged_reads(self, store: ObjectStore) -> None:
        data = pattern(300 * KiB, seed=3)
        put_bytes(store, "ranged", data)
        assert read_all(store, "ranged", offset=0, length=10) == data[:10]
        assert read_all(store, "ranged", offset=1000, length=5000) == data[1000:6000]
        assert read_all(store, "ranged", offset=len(data) - 7) == data[-7:]
        assert read_all(store, "ranged", offset=100 * KiB) == data[100 * KiB:]
        assert read_all(store, "ranged", offset=len(data) - 3, length=100) == data[-3:]
        assert read_all(store, "ranged", offset=5, length=0) == b""

    def test_reads_at_or_past_the_end_are_empty(self, store: ObjectStore) -> None:
        put_bytes(store, "short", b"0123456789")
        assert read_all(store, "short", offset=10) == b""
        assert read_all(store, "short", offset=50) == b""
        assert read_all(store, "short", offset=50, length=5) == b""
        put_bytes(store, "empty", b"")
        assert read_all(store, "empty", offset=0, length=10) == b""

    def test_iter_read_honours_range_and_chunk_size(self, store: ObjectStore) -> None:
        data = pattern(100 * KiB, seed=4)
        put_bytes(store, "chunks", data)
        chunks = list(store.iter_read("chunks", offset=10, length=50 * KiB, chunk_size=8 * KiB))
        assert all(len(chunk) <= 8 * KiB for chunk in chunks)
        assert b"".join(chunks) == data[10:10 + 50 * KiB]

    # --- head and metadata ----------------------------------------------------------------------

    def test_head_reports_size_and_metadata(self, store: ObjectStore) -> None:
        metadata = {"sha256": "ab" * 32, "mtime": "1700000000.123456789", "mode": "0100644", "uid": "1000",
                    "path_b64": "L2RhdGEvZmlsZSB3aXRoIHNwYWNl", "empty": ""}
        info = store.put("meta", io.BytesIO(b"payload"), size=7, metadata=metadata)
        assert info.size == 7
        assert dict(info.metadata) == metadata
        head = store.head("meta")
        assert head.key == "meta"
        assert head.size == 7
        self.assert_metadata(store, "meta", metadata)

    def test_invalid_metadata_is_refused_before_anything_is_stored(self, store: ObjectStore) -> None:
        for bad in ({"has-dash": "x"}, {"Upper": "x"}, {"1digit": "x"}, {"name": "nön-ascii"},
                    {"name": "line\nbreak"}, {"name": " padded "}, {"big": "x" * 2046}):
            with pytest.raises(PermanentError):
                put_bytes(store, "bad-meta", b"x", metadata=bad)
        assert not store.exists("bad-meta")

    def test_metadata_up_to_the_common_limit_round_trips(self, store: ObjectStore) -> None:
        half = (self.metadata_capacity - 3) // 2
        metadata = {"a": "x" * half, "b": "y" * half}
        metadata["c"] = "z" * (self.metadata_capacity - 3 - 2 * half)
        put_bytes(store, "full-meta", b"x", metadata=metadata)
        self.assert_metadata(store, "full-meta", metadata)

    def test_invalid_keys_are_refused(self, store: ObjectStore) -> None:
        for bad in ("", "/absolute", "nul\x00byte", "line\nbreak", "x" * 1025):
            with pytest.raises(PermanentError):
                put_bytes(store, bad, b"x")
            with pytest.raises(PermanentError):
                store.head(bad)

    # --- listing --------------------------------------------------------------------------------

    KEYS: ClassVar[list[str]] = ["a/1", "a/2", "a/b/3", "a-c", "b/1", "b/2/x", "c", "d/e/f/g"]

    def _put_tree(self, store: ObjectStore) -> None:
        for key in self.KEYS:
            put_bytes(store, key, key.encode())

    def test_list_empty_bucket(self, store: ObjectStore) -> None:
        page = store.list()
        assert (page.objects, page.prefixes, page.next_marker) == ([], [], None)

    def test_list_returns_keys_in_order_with_sizes(self, store: ObjectStore) -> None:
        self._put_tree(store)
        page = store.list()
        assert [info.key for info in page.objects] == sorted(self.KEYS)
        assert [info.size for info in page.objects] == [len(key) for key in sorted(self.KEYS)]
        assert page.prefixes == [] and page.next_marker is None

    def test_list_with_prefix(self, store: ObjectStore) -> None:
        self._put_tree(store)
        assert [i.key for i in store.list("a/").objects] == ["a/1", "a/2", "a/b/3"]
        assert [i.key for i in store.list("a").objects] == ["a-c", "a/1", "a/2", "a/b/3"]
        assert [i.key for i in store.list("b/2/").objects] == ["b/2/x"]
        assert store.list("zzz").objects == []

    def test_list_marker_is_exclusive(self, store: ObjectStore) -> None:
        self._put_tree(store)
        assert [i.key for i in store.list(marker="b/1").objects] == ["b/2/x", "c", "d/e/f/g"]
        assert [i.key for i in store.list(marker="a/15").objects][:1] == ["a/2"]
        assert store.list(marker="zzz").objects == []

    def test_list_pages_with_max_items_and_marker(self, store: ObjectStore) -> None:
        self._put_tree(store)
        first = store.list(max_items=3)
        assert [i.key for i in first.objects] == sorted(self.KEYS)[:3]
        assert first.next_marker == sorted(self.KEYS)[2]
        keys, _, pages = list_all(store, max_items=3)
        assert keys == sorted(self.KEYS)
        assert pages == 3
        keys, _, pages = list_all(store, max_items=len(self.KEYS))
        assert pages == 1, "an exactly full last page must say it is the last"

    def test_list_with_delimiter_gives_one_level(self, store: ObjectStore) -> None:
        self._put_tree(store)
        page = store.list(delimiter="/")
        assert [i.key for i in page.objects] == ["a-c", "c"]
        assert page.prefixes == ["a/", "b/", "d/"]
        page = store.list("a/", delimiter="/")
        assert [i.key for i in page.objects] == ["a/1", "a/2"]
        assert page.prefixes == ["a/b/"]
        page = store.list("d/", delimiter="/")
        assert (page.objects, page.prefixes) == ([], ["d/e/"])

    def test_list_with_delimiter_pages_never_repeat_a_prefix(self, store: ObjectStore) -> None:
        self._put_tree(store)
        for key in ("a/more/1", "a/more/2", "a/z"):
            put_bytes(store, key, b"x")
        for size in (1, 2, 3):
            keys, prefixes, _ = list_all(store, delimiter="/", max_items=size)
            assert keys == ["a-c", "c"] and prefixes == ["a/", "b/", "d/"], size
            keys, prefixes, _ = list_all(store, "a/", delimiter="/", max_items=size)
            assert keys == ["a/1", "a/2", "a/z"] and prefixes == ["a/b/", "a/more/"], size

    def test_listed_objects_carry_size_and_key(self, store: ObjectStore) -> None:
        put_bytes(store, "sized", b"12345")
        [info] = store.list().objects
        assert (info.key, info.size) == ("sized", 5)

    # --- delete ---------------------------------------------------------------------------------

    def test_delete_removes_the_object_and_is_idempotent(self, store: ObjectStore) -> None:
        put_bytes(store, "doomed/x", b"x")
        put_bytes(store, "doomed/y", b"y")
        store.delete("doomed/x")
        assert not store.exists("doomed/x")
        store.delete("doomed/x")
        store.delete("never/existed")
        assert read_all(store, "doomed/y") == b"y"
        assert [i.key for i in store.list().objects] == ["doomed/y"]

    # --- copy -----------------------------------------------------------------------------------

    def test_copy_keeps_bytes_and_metadata(self, store: ObjectStore) -> None:
        put_bytes(store, "src", b"copy me", metadata={"sha256": "00ff", "uid": "7"})
        info = store.copy("src", "dst/copy")
        assert info.key == "dst/copy" and info.size == 7
        assert read_all(store, "dst/copy") == b"copy me"
        self.assert_metadata(store, "dst/copy", {"sha256": "00ff", "uid": "7"})
        assert read_all(store, "src") == b"copy me"

    def test_copy_with_new_metadata_replaces_it(self, store: ObjectStore) -> None:
        put_bytes(store, "src", b"copy me", metadata={"sha256": "00ff", "uid": "7"})
        store.copy("src", "dst", metadata={"state": "migrated"})
        self.assert_metadata(store, "dst", {"state": "migrated"})
        self.assert_metadata(store, "src", {"sha256": "00ff", "uid": "7"})

    def test_copy_with_empty_metadata_clears_it(self, store: ObjectStore) -> None:
        put_bytes(store, "src", b"copy me", metadata={"sha256": "00ff", "uid": "7"})
        store.copy("src", "cleared", metadata={})
        self.assert_metadata(store, "cleared", {})
        assert read_all(store, "cleared") == b"copy me"

    def test_copy_replaces_an_existing_destination(self, store: ObjectStore) -> None:
        put_bytes(store, "src", b"new")
        put_bytes(store, "dst", b"old old old", metadata={"old": "1"})
        store.copy("src", "dst")
        assert read_all(store, "dst") == b"new"
        self.assert_metadata(store, "dst", {})

    def test_copy_of_a_multipart_sized_object(self, store: ObjectStore) -> None:
        store.put("big-src", Generated(LARGE, seed=5), metadata={"kind": "big"})
        store.copy("big-src", "big-dst")
        self.assert_metadata(store, "big-dst", {"kind": "big"})
        digest = hashlib.sha256()
        for chunk in store.iter_read("big-dst"):
            digest.update(chunk)
        assert digest.hexdigest() == generated_sha256(LARGE, seed=5)

    # --- missing objects ------------------------------------------------------------------------

    def test_missing_keys_are_not_found(self, store: ObjectStore) -> None:
        put_bytes(store, "dir/present", b"x")
        for key in ("absent", "dir/absent", "dir", "dir/present/deeper"):
            with pytest.raises(NotFound):
                store.head(key)
            with pytest.raises(NotFound):
                store.open_read(key)
            with pytest.raises(NotFound):
                store.open_read(key, offset=1, length=1)
            assert not store.exists(key)
        with pytest.raises(NotFound):
            store.copy("absent", "copy-of-absent")
        assert not store.exists("copy-of-absent")

    # --- if_absent ------------------------------------------------------------------------------

    def test_if_absent_creates_a_missing_object(self, store: ObjectStore) -> None:
        store.put("fresh", io.BytesIO(b"new"), if_absent=True)
        assert read_all(store, "fresh") == b"new"

    def test_if_absent_refuses_to_replace_an_object(self, store: ObjectStore) -> None:
        put_bytes(store, "taken", b"original", metadata={"v": "1"})
        with pytest.raises(AlreadyExists):
            put_bytes(store, "taken", b"intruder", if_absent=True)
        with pytest.raises(AlreadyExists):
            store.put("taken", Generated(LARGE), if_absent=True)
        assert read_all(store, "taken") == b"original"
        self.assert_metadata(store, "taken", {"v": "1"})

    def test_if_absent_lets_exactly_one_racing_writer_win(self, store: ObjectStore) -> None:
        results: list[str] = []
        barrier = threading.Barrier(4)

        stores = [self.twin(store) for _ in range(4)]

        def writer(number: int) -> None:
            barrier.wait()
            try:
                put_bytes(stores[number], "contended", f"writer {number}".encode(), if_absent=True)
                results.append(f"won {number}")
            except AlreadyExists:
                results.append("lost")

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        winners = [r for r in results if r.startswith("won")]
        assert len(results) == 4 and len(winners) == 1, results
        assert read_all(store, "contended") == f"writer {winners[0].split()[1]}".encode()

    # --- failed uploads -------------------------------------------------------------------------

    def test_a_failed_upload_leaves_no_object(self, store: ObjectStore) -> None:
        for number, (size, fail_after) in enumerate([(LARGE, 7 * MiB), (100 * KiB, 50 * KiB), (10, 0)]):
            with pytest.raises(SourceBroke):
                store.put(f"broken-{number}", Generated(size, fail_after=fail_after))
            assert not store.exists(f"broken-{number}")
        assert store.list().objects == []

    def test_a_failed_upload_keeps_the_previous_object(self, store: ObjectStore) -> None:
        put_bytes(store, "precious", b"previous version", metadata={"v": "1"})
        with pytest.raises(SourceBroke):
            store.put("precious", Generated(LARGE, fail_after=6 * MiB), metadata={"v": "2"})
        with pytest.raises(SourceBroke):
            store.put("precious", Generated(1000, fail_after=10))
        assert read_all(store, "precious") == b"previous version"
        self.assert_metadata(store, "precious", {"v": "1"})

    def test_a_stream_that_differs_from_its_declared_size_is_refused(self, store: ObjectStore) -> None:
        put_bytes(store, "sized", b"previous")
        for data, declared in ((b"short", 10), (b"longer than said", 4), (pattern(LARGE), LARGE - 1),
                               (pattern(LARGE), LARGE + 1)):
            with pytest.raises(PermanentError):
                store.put("sized", io.BytesIO(data), size=declared)
            with pytest.raises(PermanentError):
                store.put("new-sized", io.BytesIO(data), size=declared)
        assert read_all(store, "sized") == b"previous"
        assert not store.exists("new-sized")

    # --- memory ---------------------------------------------------------------------------------

    def test_upload_and_download_use_bounded_memory(self, store: ObjectStore) -> None:
        bound, probe = self.memory_bound, self.memory_probe
        assert bound < probe / 2, "the bound must prove that the object was not held whole"
        tracemalloc.start()
        try:
            store.put("memory-probe", Generated(probe, seed=9))
            _, upload_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            total = sum(len(chunk) for chunk in store.iter_read("memory-probe", chunk_size=MiB))
            _, download_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert total == probe
        assert upload_peak < bound, f"upload peaked at {upload_peak / MiB:.1f} MiB"
        assert download_peak < bound, f"download peaked at {download_peak / MiB:.1f} MiB"

