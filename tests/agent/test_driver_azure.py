"""The driver contract on Azurite, and the Azure driver's account URLs and error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient

from agent.drivers.azure import AzureStore, account_url_for, map_error
from agent.drivers.base import AccessDenied, AlreadyExists, NotFound, PermanentError, TransientError
from agent.drivers.registry import open_store
from tests.agent import servers
from tests.agent.conftest import unique_name
from tests.agent.driver_contract import DriverContract, list_all, put_bytes

pytestmark = pytest.mark.emulators
BLOCK = 1024 * 1024


def azure_bucket(server: servers.Server, container: str, **advanced: Any) -> dict[str, Any]:
    """A bucket description as the hub sends it."""
    return {
        "storage_type": "azure", "name": "test", "storage_account": servers.AZURITE_ACCOUNT,
        "container": container, "access_key": servers.AZURITE_KEY, "endpoint": server.host, "port": server.port,
        "scheme": "http", "ssl_verify": True,
        "advanced_settings": {"block_size": BLOCK, "max_concurrency": 2, "max_attempts": 1,
                              "download_chunk_size": BLOCK, **advanced},
    }


def new_store(server: servers.Server, **advanced: Any) -> AzureStore:
    store = open_store(azure_bucket(server, unique_name(), **advanced))
    assert isinstance(store, AzureStore)
    store._container.create_container()
    return store


class TestAzureOnAzurite(DriverContract):
    @pytest.fixture
    def store(self, azurite_server: servers.Server) -> Iterator[AzureStore]:
        store = new_store(azurite_server)
        yield store
        store.close()

    def assert_multipart(self, store: AzureStore, key: str) -> None:
        blocks = store._container.get_blob_client(key).get_block_list("committed")[0]
        expected = -(-store.head(key).size // BLOCK)
        assert len(blocks) == expected, f"{key}: {len(blocks)} blocks, {expected} expected"


def test_paging_resumes_from_a_remembered_token_instead_of_rescanning(azurite_server: servers.Server, monkeypatch):
    store = new_store(azurite_server)
    keys = [f"k{n:03d}" for n in range(30)]
    for key in keys:
        put_bytes(store, key, b"")
    calls: list[str | None] = []
    original = store._list

    def spy(prefix, marker, max_items, delimiter, context, token):
        calls.append(token)
        return original(prefix, marker, max_items, delimiter, context, token)

    monkeypatch.setattr(store, "_list", spy)
    found, _, pages = list_all(store, max_items=7)
    assert found == keys and pages == 5
    # Page 2 starts on the service's first page (no token needed); every later page resumes from
    # the token remembered for its marker instead of listing from the start again.
    assert calls[:2] == [None, None] and all(token is not None for token in calls[2:])
    # A marker the driver did not hand out still works (by scanning from the start).
    assert [i.key for i in store.list(marker="k015", max_items=2).objects] == ["k016", "k017"]


def test_a_missing_container_is_not_found(azurite_server: servers.Server):
    store = open_store(azure_bucket(azurite_server, unique_name()))
    for call in (lambda: put_bytes(store, "k", b"x"), store.list, lambda: store.head("k"),
                 lambda: store.open_read("k"), lambda: store.delete("k")):
        with pytest.raises(NotFound):
            call()


def test_a_wrong_key_is_access_denied_and_never_shown(azurite_server: servers.Server):
    good = new_store(azurite_server)
    bucket = azure_bucket(azurite_server, good.container)
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
    bucket["access_key"] = wrong
    store = open_store(bucket)
    with pytest.raises(AccessDenied) as raised:
        put_bytes(store, "k", b"x")
    assert wrong not in str(raised.value)
    with pytest.raises(AccessDenied):
        store.list()
    assert servers.AZURITE_KEY not in repr(good) and wrong not in repr(store)


def test_an_unreachable_account_is_transient():
    store = AzureStore("c", account_url=f"http://127.0.0.1:{servers.free_port()}/acct", account_name="acct",
                       account_key=servers.AZURITE_KEY, max_attempts=1, connect_timeout=2)
    with pytest.raises(TransientError):
        store.head("k")


@pytest.mark.parametrize(("fields", "expected"), [
    ({"storage_account": "acct"}, "https://acct.blob.core.windows.net"),
    ({"storage_account": "acct", "endpoint": "127.0.0.1", "port": 10000, "scheme": "http"},
     "http://127.0.0.1:10000/acct"),
    ({"storage_account": "acct", "endpoint": "localhost", "port": 10000, "scheme": "http"},
     "http://localhost:10000/acct"),
    ({"storage_account": "acct", "endpoint": "acct.blob.core.windows.net"}, "https://acct.blob.core.windows.net"),
    ({"storage_account": "acct", "endpoint": "blob.core.chinacloudapi.cn"}, "https://acct.blob.core.chinacloudapi.cn"),
    ({"storage_account": "acct", "endpoint": "azs.example.test", "port": 8443,
      "advanced_settings": {"path_style": True}}, "https://azs.example.test:8443/acct"),
    ({"storage_account": "acct", "advanced_settings": {"account_url": "https://x.example.test/"}},
     "https://x.example.test"),
])
def test_account_url_from_the_hub_fields(fields, expected):
    assert account_url_for(fields) == expected


def test_from_bucket_needs_an_account_and_a_container():
    with pytest.raises(PermanentError):
        AzureStore.from_bucket({"container": "c"})
    with pytest.raises(PermanentError):
        AzureStore.from_bucket({"storage_account": "acct"})
    store = AzureStore.from_bucket({"storage_account": "acct", "name": "fallback-container"})
    assert store.container == "fallback-container"


def _http_error(cls: type[HttpResponseError], status: int, code: str) -> HttpResponseError:
    class Response:
        status_code = status
        reason = "reason"
        headers: dict[str, str] = {"x-ms-error-code": code}

        def text(self) -> str:
            return ""

    error = cls(message="m", response=Response())
    error.status_code = status
    error.error_code = code
    return error


@pytest.mark.parametrize(("error", "expected"), [
    (_http_error(ResourceNotFoundError, 404, "BlobNotFound"), NotFound),
    (_http_error(ClientAuthenticationError, 403, "AuthenticationFailed"), AccessDenied),
    (_http_error(HttpResponseError, 403, "AuthorizationPermissionMismatch"), AccessDenied),
    (_http_error(ResourceExistsError, 409, "BlobAlreadyExists"), AlreadyExists),
    (_http_error(HttpResponseError, 503, "ServerBusy"), TransientError),
    (_http_error(HttpResponseError, 500, "InternalError"), TransientError),
    (_http_error(HttpResponseError, 429, "TooManyRequests"), TransientError),
    (_http_error(HttpResponseError, 400, "InvalidMetadata"), PermanentError),
    (ServiceRequestError("connection refused"), TransientError),
    (ServiceResponseError("connection reset"), TransientError),
])
def test_azure_errors_map_to_the_driver_hierarchy(error, expected):
    assert type(map_error(error, key="k", operation="write")) is expected


def test_the_service_client_is_only_built_from_the_bucket(azurite_server: servers.Server):
    # The store builds its own client; a second, independent client sees what it wrote.
    store = new_store(azurite_server)
    put_bytes(store, "seen", b"by others")
    other = BlobServiceClient(f"{azurite_server.url}/{servers.AZURITE_ACCOUNT}",
                              credential={"account_name": servers.AZURITE_ACCOUNT,
                                          "account_key": servers.AZURITE_KEY})
    blob = other.get_container_client(store.container).get_blob_client("seen")
    assert blob.download_blob().readall() == b"by others"
