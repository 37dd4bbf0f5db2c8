"""The driver contract on moto's S3 server, and the S3 driver's configuration and error mapping."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from agent.drivers.base import AccessDenied, AlreadyExists, NotFound, PermanentError, TransientError
from agent.drivers.registry import open_store
from agent.drivers.s3 import S3Store, map_error
from tests.agent import servers
from tests.agent.conftest import unique_name
from tests.agent.driver_contract import LARGE, DriverContract, Generated, SourceBroke, put_bytes
from tests.agent.s3_helpers import admin_client, assert_s3_multipart, new_store, s3_bucket

pytestmark = pytest.mark.emulators


class TestS3OnMoto(DriverContract):
    # moto serves from this very process: tracemalloc would count the server's copies too.
    test_upload_and_download_use_bounded_memory = None

    @pytest.fixture
    def store(self, moto_server: servers.Server) -> Iterator[S3Store]:
        store = new_store(moto_server, unique_name())
        yield store
        store.close()

    def assert_multipart(self, store: S3Store, key: str) -> None:
        assert_s3_multipart(store, key)


def test_a_failed_multipart_upload_is_aborted(moto_server: servers.Server):
    store = new_store(moto_server, unique_name())
    with pytest.raises(SourceBroke):
        store.put("broken", Generated(LARGE, fail_after=LARGE - 1000))
    uploads = admin_client(moto_server).list_multipart_uploads(Bucket=store.bucket)
    assert uploads.get("Uploads", []) == []


def test_if_absent_is_enforced_by_the_server_not_only_checked(moto_server: servers.Server, monkeypatch):
    store = new_store(moto_server, unique_name())
    put_bytes(store, "k", b"first")
    monkeypatch.setattr(store, "exists", lambda key: False)  # as if a racing writer got in after the check
    with pytest.raises(AlreadyExists):
        put_bytes(store, "k", b"second", if_absent=True)
    with pytest.raises(AlreadyExists):
        store.put("k", Generated(LARGE), if_absent=True)
    assert store.open_read("k").read() == b"first"
    put_bytes(store, "k", b"third")  # an unconditional put is not affected
    assert store.open_read("k").read() == b"third"


def test_a_missing_bucket_is_not_found(moto_server: servers.Server):
    store = open_store(s3_bucket(moto_server, unique_name()))
    for call in (lambda: put_bytes(store, "k", b"x"), store.list, lambda: store.head("k"),
                 lambda: store.open_read("k"), lambda: store.delete("k")):
        with pytest.raises(NotFound):
            call()


def test_an_unreachable_endpoint_is_transient():
    store = open_store(s3_bucket(servers.Server("closed", "127.0.0.1", servers.free_port()), "bucket",
                                 max_attempts=1, connect_timeout=2))
    with pytest.raises(TransientError):
        store.head("k")
    with pytest.raises(TransientError):
        put_bytes(store, "k", b"x")


def test_from_bucket_builds_the_client_from_the_hub_fields():
    store = S3Store.from_bucket({
        "name": "data", "endpoint": "s3.example.test", "port": 9000, "scheme": "http", "region": "eu-west-3",
        "ssl_verify": False, "access_key_id": "AKIAEXAMPLE", "secret_access_key": "very-secret-value",
        "advanced_settings": {"part_size": 16 * 1024 * 1024, "max_concurrency": "8", "addressing_style": "virtual"},
    })
    assert store.endpoint_url == "http://s3.example.test:9000"
    assert store.region == "eu-west-3"
    assert store.part_size == 16 * 1024 * 1024 and store.max_concurrency == 8
    aws = S3Store.from_bucket({"name": "data", "access_key_id": "", "secret_access_key": ""})
    assert aws.endpoint_url is None
    with pytest.raises(PermanentError):
        S3Store.from_bucket({"name": "data", "advanced_settings": {"part_size": 1024}})
    with pytest.raises(PermanentError):
        S3Store.from_bucket({"name": ""})


def test_credentials_never_show_in_reprs_or_errors(moto_server: servers.Server):
    secret = servers.S3_SECRET_KEY
    store = open_store(s3_bucket(moto_server, unique_name()))
    assert secret not in repr(store) and servers.S3_ACCESS_KEY not in repr(store)
    with pytest.raises(NotFound) as raised:
        store.put("k", io.BytesIO(b"x"))
    assert secret not in str(raised.value) and secret not in repr(raised.value)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


@pytest.mark.parametrize(("error", "expected"), [
    (_client_error("NoSuchKey", 404), NotFound),
    (_client_error("NoSuchBucket", 404), NotFound),
    (_client_error("404", 404), NotFound),
    (_client_error("AccessDenied", 403), AccessDenied),
    (_client_error("InvalidAccessKeyId", 403), AccessDenied),
    (_client_error("SignatureDoesNotMatch", 403), AccessDenied),
    (_client_error("SlowDown", 503), TransientError),
    (_client_error("InternalError", 500), TransientError),
    (_client_error("RequestTimeout", 400), TransientError),
    (_client_error("ThrottlingException", 400), TransientError),
    (_client_error("PreconditionFailed", 412), AlreadyExists),
    (_client_error("InvalidArgument", 400), PermanentError),
    (EndpointConnectionError(endpoint_url="http://x"), TransientError),
    (ConnectTimeoutError(endpoint_url="http://x"), TransientError),
    (ReadTimeoutError(endpoint_url="http://x"), TransientError),
    (NoCredentialsError(), AccessDenied),
    (ParamValidationError(report="bad"), PermanentError),
])
def test_botocore_errors_map_to_the_driver_hierarchy(error, expected):
    mapped = map_error(error, key="k", operation="put")
    assert type(mapped) is expected
    assert mapped.key == "k"
