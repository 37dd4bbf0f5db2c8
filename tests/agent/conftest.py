"""Fixtures for the agent tests: one local server of each kind per test session.

Servers start on loopback, on a free port, the first time a test asks for them, and stop (by
PID, see ``tests/agent/servers.py``) when the session ends. Each backend's test module makes a
fresh bucket/container per test on the shared server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent import servers


@pytest.fixture
def space(tmp_path: Path) -> Path:
    """An empty space root (a folder the agent's filesystem driver may touch)."""
    root = tmp_path / "space"
    root.mkdir()
    return root


def unique_name(prefix: str = "hub") -> str:
    """A bucket/container name valid on S3, Azure and GCS (lower-case letters, digits, dashes)."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def _start(start: Callable[[], servers.Server]) -> servers.Server:
    try:
        return start()
    except servers.Unavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[servers.Server]:
    server = _start(servers.start_moto)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rclone_server(server_dir: Path) -> Iterator[servers.Server]:
    server = _start(lambda: servers.start_rclone(server_dir / "rclone-data", server_dir / "rclone"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_server(server_dir: Path) -> Iterator[servers.Server]:
    server = _start(lambda: servers.start_azurite(server_dir / "azurite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server(server_dir: Path) -> Iterator[servers.Server]:
    server = _start(lambda: servers.start_fake_gcs(server_dir / "fake-gcs"))
    yield server
    server.stop()
