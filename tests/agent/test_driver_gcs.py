"""The driver contract on fake-gcs-server, and the GCS driver's credentials and error mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials

from agent.drivers.base import AccessDenied, AlreadyExists, NotFound, PermanentError, TransientError
from agent.drivers.gcs import GCSStore, credentials_for, map_error
from agent.drivers.registry import open_store
from tests.agent import servers
from tests.agent.conftest import unique_name
from tests.agent.driver_contract import LARGE, DriverContract, Generated, put_bytes

pytestmark = pytest.mark.emulators
CHUNK = 1024 * 1024  # a multiple of GCS's 256 KiB unit: the contract's LARGE object takes 12 requests


def gcs_bucket(server: servers.Server, name: str, **advanced: Any) -> dict[str, Any]:
    """A bucket description as the hub sends it, for an emulator (anonymous credentials)."""
    return {
        "storage_type": "gcs", "name": name, "endpoint": server.host, "port": server.port, "scheme": "http",
        "ssl_verify": True, "credentials_json": "", "credentials_file": "",
        "advanced_settings": {"anonymous": True, "project": "hub-test", "chunk_size": CHUNK,
                              "download_chunk_size": 1024 * 1024, "connect_timeout": 5, "retry_timeout": 0,
                              **advanced},
    }


def new_store(server: servers.Server, **advanced: Any) -> GCSStore:
    """A store on a new bucket; it records the upload requests it sends (``store.uploads``)."""
    store = open_store(gcs_bucket(server, unique_name(), **advanced))
    assert isinstance(store, GCSStore)
    store._client.create_bucket(store.bucket_name)
    session = store._client._http
    uploads: list[str] = []
    original = session.request

    def recording(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if "upload" in url:
            uploads.append(f"{method} {url}")
        return original(method, url, *args, **kwargs)

    session.request = recording
    store.uploads = uploads  # type: ignore[attr-defined]
    return store


class TestGCSOnFakeGCSServer(DriverContract):
    # fake-gcs-server stores each resumable upload by re-assembling it, which is slow: a smaller
    # probe (the bound still proves the object was never held whole).
    memory_probe = 32 * 1024 * 1024
    memory_bound = 12 * 1024 * 1024
    # fake-gcs-server blanks metadata values that a PATCH sets to null instead of deleting them
    # (GCS deletes them), so metadata cannot be cleared there: see test_copy_with_empty_metadata.
    test_copy_with_empty_metadata_clears_it = None

    @pytest.fixture
    def store(self, gcs_server: servers.Server) -> Iterator[GCSStore]:
        store = new_store(gcs_server)
        yield store
        store.close()

    def twin(self, store: GCSStore) -> GCSStore:
        return GCSStore(store.bucket_name, credentials=AnonymousCredentials(), project="hub-test",
                        api_endpoint=store.api_endpoint, retry_timeout=0)

    def assert_multipart(self, store: GCSStore, key: str) -> None:
        chunks = [u for u in store.uploads if u.startswith("PUT ") and "upload_id=" in u]
        expected = -(-store.head(key).size // CHUNK)
        assert len(chunks) >= expected, f"{key}: {len(chunks)} chunk requests, {expected} expected"


def test_a_missing_bucket_is_not_found(gcs_server: servers.Server):
    store = open_store(gcs_bucket(gcs_server, unique_name()))
    for call in (lambda: put_bytes(store, "k", b"x"), store.list, lambda: store.head("k"),
                 lambda: store.open_read("k")):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound):
        store.put("k", Generated(LARGE))


def test_an_unreachable_endpoint_is_transient():
    store = open_store(gcs_bucket(servers.Server("closed", "127.0.0.1", servers.free_port()), "bucket",
                                  connect_timeout=2))
    with pytest.raises(TransientError):
        store.head("k")
    with pytest.raises(TransientError):
        put_bytes(store, "k", b"x")


def test_the_emulator_variable_selects_anonymous_credentials(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    credentials, project = credentials_for({"name": "b"})
    assert isinstance(credentials, AnonymousCredentials) and project is None
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    with pytest.raises(PermanentError):
        credentials_for({"name": "b"})


def test_a_service_account_key_is_used_and_never_shown(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key = {"type": "service_account", "project_id": "proj-1", "private_key_id": "abc123", "private_key": pem,
           "client_email": "agent@proj-1.iam.gserviceaccount.com", "client_id": "1",
           "token_uri": "https://oauth2.googleapis.com/token"}
    for bucket in ({"name": "b", "credentials_json": key}, {"name": "b", "credentials_json": json.dumps(key)}):
        store = GCSStore.from_bucket(bucket)
        assert store._client.project == "proj-1"
        assert "PRIVATE KEY" not in repr(store)
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    assert GCSStore.from_bucket({"name": "b", "credentials_file": str(path)})._client.project == "proj-1"
    broken = dict(key, private_key="-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(PermanentError) as raised:
        GCSStore.from_bucket({"name": "b", "credentials_json": broken})
    assert "not a key" not in str(raised.value)
    with pytest.raises(PermanentError):
        GCSStore.from_bucket({"name": "b", "credentials_file": str(tmp_path / "missing.json")})


def test_from_bucket_builds_the_endpoint_and_checks_the_chunk_size(gcs_server: servers.Server):
    store = GCSStore.from_bucket(gcs_bucket(gcs_server, "b"))
    assert store.api_endpoint == gcs_server.url
    with pytest.raises(PermanentError):
        GCSStore.from_bucket(gcs_bucket(gcs_server, "b", chunk_size=300 * 1024))


def _response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    return response


@pytest.mark.parametrize(("error", "expected"), [
    (api_exceptions.NotFound("gone"), NotFound),
    (api_exceptions.Forbidden("no"), AccessDenied),
    (api_exceptions.Unauthorized("who"), AccessDenied),
    (api_exceptions.PreconditionFailed("taken"), AlreadyExists),
    (api_exceptions.TooManyRequests("slow down"), TransientError),
    (api_exceptions.ServiceUnavailable("busy"), TransientError),
    (api_exceptions.InternalServerError("oops"), TransientError),
    (api_exceptions.BadRequest("bad"), PermanentError),
    (requests.ConnectionError("refused"), TransientError),
    (requests.Timeout("slow"), TransientError),
])
def test_google_errors_map_to_the_driver_hierarchy(error, expected):
    assert type(map_error(error, key="k", operation="upload")) is expected


def test_copy_with_empty_metadata_asks_gcs_to_delete_every_name(gcs_server: servers.Server):
    """GCS deletes names patched to null; fake-gcs-server keeps them with empty values."""
    store = new_store(gcs_server)
    put_bytes(store, "src", b"copy me", metadata={"sha256": "00ff", "uid": "7"})
    store.copy("src", "cleared", metadata={})
    assert store.head("cleared").metadata in ({}, {"sha256": "", "uid": ""})
    assert store.head("src").metadata == {"sha256": "00ff", "uid": "7"}
