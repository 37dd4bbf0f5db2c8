"""The driver contract on the in-memory test double, and the double's own test hooks."""

from __future__ import annotations

import io

import pytest

from agent.drivers.base import NotFound, TransientError
from agent.drivers.memory import MemoryStore
from tests.agent.driver_contract import DriverContract, read_all

pytestmark = pytest.mark.smoke


class TestMemoryStore(DriverContract):
    # The double keeps every object in memory by design.
    test_upload_and_download_use_bounded_memory = None

    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()


def test_fail_next_injects_errors_in_order():
    store = MemoryStore()
    store.fail_next(TransientError("busy"))
    store.fail_next(NotFound("gone"))
    with pytest.raises(TransientError):
        store.put("k", io.BytesIO(b"x"))
    with pytest.raises(NotFound):
        store.list()
    store.put("k", io.BytesIO(b"x"))
    assert read_all(store, "k") == b"x"


def test_corrupt_changes_bytes_but_not_what_head_says():
    store = MemoryStore()
    store.put("k", io.BytesIO(b"good"), metadata={"sha256": "abc"})
    store.corrupt("k", b"evil")
    assert store.raw("k") == b"evil"
    assert store.head("k").metadata == {"sha256": "abc"}
