"""Azure Blob Storage containers (azure-storage-blob), block blobs only.

The bucket's fields: ``storage_account``, ``container`` (or ``name``), ``access_key`` (the
account's shared key; empty: anonymous access to a public container), ``endpoint``/``port``/
``scheme``/``ssl_verify``. The account URL is, in order:

* ``advanced_settings["account_url"]`` when given;
* no ``endpoint``: ``https://<account>.blob.core.windows.net``;
* an ``endpoint`` that is an IP address or ``localhost`` (Azurite and other emulators), or
  ``advanced_settings["path_style"]`` true: ``<scheme>://<endpoint>[:port]/<account>``;
* an ``endpoint`` starting with ``<account>.``: ``<scheme>://<endpoint>[:port]``;
* any other ``endpoint`` is a sovereign-cloud or Azure Stack suffix such as
  ``blob.core.chinacloudapi.cn``: ``<scheme>://<account>.<endpoint>[:port]``.

``advanced_settings`` (all optional): ``block_size`` (bytes per staged block, default 8 MiB),
``max_single_put_size`` (objects up to this size go in one request; default: the block size),
``max_concurrency`` (blocks in flight, default 4), ``download_chunk_size`` (default 2 MiB),
``max_attempts`` (default 3), ``connect_timeout``/``read_timeout`` (10/60 s), ``copy_timeout``
(how long to wait for a server-side copy to finish, default 3600 s).

Uploads stage blocks and commit the block list last, so an interrupted upload commits nothing
(staged blocks are discarded by the service after a week) and the previous blob stays.
``if_absent`` sends ``If-None-Match: *`` with the single put or the block-list commit: atomic.
Memory: ``max_concurrency`` blocks in flight for an upload. A download holds one
``download_chunk_size`` chunk, but azure-storage-blob briefly allocates 8 bytes per byte of each
chunk while it receives it (``list()`` of a response whose ``len`` is its byte count), hence the
small default chunk: a download peaks at about 24 MiB with it (12 MiB with 1 MiB chunks).

Listing: Azure has no "start after this key" parameter, only opaque continuation tokens. For
each ``next_marker`` it returns, the driver remembers (per process, bounded) the token of the
service page holding the entry that follows it, so paging through a listing resumes where it
stopped; any other marker makes it scan from the start of the prefix, skipping entries up to the
marker (cost proportional to the marker's position).

Errors: 404 -> NotFound; 401/403 -> AccessDenied; 408/429/5xx, connection and read failures, a
blob modified while it is read -> TransientError; ``BlobAlreadyExists``/412 on ``if_absent`` ->
AlreadyExists; the rest -> PermanentError. Messages carry Azure's error code and the HTTP status,
never credentials.
"""

from __future__ import annotations

import io
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, BinaryIO

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobPrefix, BlobServiceClient

from agent.drivers.base import (
    AccessDenied,
    AlreadyExists,
    CheckedReader,
    DriverError,
    ListPage,
    NotFound,
    ObjectInfo,
    ObjectStore,
    PermanentError,
    TransientError,
    as_bool,
    as_int,
    check_key,
    check_metadata,
    make_page,
    skip_for_marker,
)

MiB = 1024 * 1024
MAX_RESULTS = 5000
_TOKEN_CACHE_SIZE = 4096
# (account URL, container, prefix, delimiter, marker) -> continuation token of the service page
# that holds the entry right after the marker. Shared by the process's stores (see module doc).
_TOKENS: OrderedDict[tuple[str, str, str, str, str], str] = OrderedDict()
_TOKENS_LOCK = threading.Lock()


def map_error(error: BaseException, *, key: str | None, operation: str) -> DriverError:
    """The driver error for an azure-core exception (see the module docstring)."""
    if isinstance(error, DriverError):
        return error
    if isinstance(error, HttpResponseError):
        status = int(getattr(error, "status_code", None) or 0)
        code = getattr(error, "error_code", None) or ""
        code = str(getattr(code, "value", code))
        message = f"Azure {operation} failed: {code or 'error'} (HTTP {status or '?'})"
        if isinstance(error, ResourceModifiedError) and operation == "read":
            return TransientError(message + "; the blob changed while it was read", key=key)
        if isinstance(error, ResourceNotFoundError) or status == 404:
            return NotFound(message, key=key)
        if isinstance(error, ClientAuthenticationError) or status in (401, 403):
            return AccessDenied(message, key=key)
        if code == "BlobAlreadyExists" or (isinstance(error, ResourceExistsError) and operation == "upload"):
            return AlreadyExists(message, key=key)
        if status in (408, 429) or status >= 500:
            return TransientError(message, key=key)
        if status == 0:  # a response that could not be read (DecodeError, IncompleteReadError)
            return TransientError(message, key=key)
        return PermanentError(message, key=key)
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return TransientError(f"Azure {operation} failed: {type(error).__name__}", key=key)
    return PermanentError(f"Azure {operation} failed: {type(error).__name__}", key=key)


def account_url_for(bucket: Mapping[str, Any]) -> str:
    """The blob service URL for a bucket's account and endpoint (rules in the module docstring)."""
    advanced = bucket.get("advanced_settings") or {}
    if advanced.get("account_url"):
        return str(advanced["account_url"]).rstrip("/")
    account = str(bucket.get("storage_account") or "")
    if not account:
        raise PermanentError("an Azure bucket needs a storage_account")
    endpoint = str(bucket.get("endpoint") or "").strip().rstrip("/")
    if not endpoint:
        return f"https://{account}.blob.core.windows.net"
    scheme = str(bucket.get("scheme") or "https")
    port = f":{int(bucket['port'])}" if bucket.get("port") else ""
    if "://" in endpoint:
        scheme, _, endpoint = endpoint.partition("://")
    if as_bool(advanced.get("path_style"), False) or _is_ip_or_localhost(endpoint):
        return f"{scheme}://{endpoint}{port}/{account}"
    if endpoint.startswith(f"{account}."):
        return f"{scheme}://{endpoint}{port}"
    return f"{scheme}://{account}.{endpoint}{port}"


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class AzureStore(ObjectStore):
    """One blob container. Thread-safe (the SDK's clients are)."""

    storage_type = "azure"

    def __init__(self, container: str, *, account_url: str, account_name: str = "", account_key: str = "",
                 verify: bool = True, block_size: int = 8 * MiB, max_single_put_size: int | None = None,
                 max_concurrency: int = 4, download_chunk_size: int = 2 * MiB, max_attempts: int = 3,
                 connect_timeout: float = 10, read_timeout: float = 60, copy_timeout: float = 3600) -> None:
        if not container:
            raise PermanentError("an Azure bucket needs a container")
        self.container = container
        self.account_url = account_url
        self.max_concurrency = max(1, max_concurrency)
        self.copy_timeout = copy_timeout
        credential: dict[str, str] | None = None
        if account_key:
            if not account_name:
                raise PermanentError("an Azure shared key needs the storage account's name")
            credential = {"account_name": account_name, "account_key": account_key}
        self._service = BlobServiceClient(
            account_url, credential=credential, connection_verify=verify,
            max_block_size=block_size, max_single_put_size=max_single_put_size or block_size,
            min_large_block_upload_threshold=min(block_size, 4 * MiB + 1),
            max_single_get_size=download_chunk_size, max_chunk_get_size=download_chunk_size,
            retry_total=max(0, max_attempts - 1), connection_timeout=connect_timeout, read_timeout=read_timeout,
        )
        self._container = self._service.get_container_client(container)

    @classmethod
    def from_bucket(cls, bucket: Mapping[str, Any]) -> AzureStore:
        advanced = bucket.get("advanced_settings") or {}
        block_size = as_int(advanced.get("block_size"), 8 * MiB, minimum=64 * 1024)
        return cls(
            str(bucket.get("container") or bucket.get("name") or ""), account_url=account_url_for(bucket),
            account_name=str(bucket.get("storage_account") or ""), account_key=str(bucket.get("access_key") or ""),
            verify=as_bool(bucket.get("ssl_verify"), True), block_size=block_size,
            max_single_put_size=as_int(advanced.get("max_single_put_size"), block_size, minimum=1),
            max_concurrency=as_int(advanced.get("max_concurrency"), 4, minimum=1),
            download_chunk_size=as_int(advanced.get("download_chunk_size"), 2 * MiB, minimum=64 * 1024),
            max_attempts=as_int(advanced.get("max_attempts"), 3, minimum=1),
            connect_timeout=as_int(advanced.get("connect_timeout"), 10, minimum=1),
            read_timeout=as_int(advanced.get("read_timeout"), 60, minimum=1),
            copy_timeout=as_int(advanced.get("copy_timeout"), 3600, minimum=1),
        )

    def __repr__(self) -> str:
        return f"AzureStore(account_url={self.account_url!r}, container={self.container!r})"

    def close(self) -> None:
        self._service.close()

    # --- writing --------------------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            metadata: Mapping[str, str] | None = None, if_absent: bool = False) -> ObjectInfo:
        check_key(key)
        checked = check_metadata(metadata)
        reader = CheckedReader(stream, size, key=key)
        blob = self._container.get_blob_client(key)
        try:
            response = blob.upload_blob(reader, length=size, metadata=checked or None, overwrite=not if_absent,
                                        max_concurrency=self.max_concurrency)
        except HttpResponseError as error:
            if if_absent and error.status_code in (409, 412):
                raise AlreadyExists("object exists", key=key) from None
            raise map_error(error, key=key, operation="write") from None
        except AzureError as error:
            raise map_error(error, key=key, operation="write") from None
        return ObjectInfo(key=key, size=reader.count, etag=_etag(response.get("etag")),
                          modified=response.get("last_modified"), metadata=checked,
                          version=response.get("version_id"))

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        check_key(source_key)
        check_key(dest_key)
        checked = None if metadata is None else check_metadata(metadata)
        source = self._container.get_blob_client(source_key)
        dest = self._container.get_blob_client(dest_key)
        try:
            source.get_blob_properties()
        except AzureError as error:
            raise map_error(error, key=source_key, operation="copy") from None
        try:
            # Without metadata the service copies the source's; so does an empty mapping, which
            # is why "clear it" is done after the copy.
            copy = dest.start_copy_from_url(source.url, metadata=checked or None)
            deadline = time.monotonic() + self.copy_timeout
            status = copy.get("copy_status")
            while status == "pending":
                if time.monotonic() > deadline:
                    dest.abort_copy(copy["copy_id"])
                    raise TransientError("the server-side copy did not finish in time", key=dest_key)
                time.sleep(0.5)
                status = dest.get_blob_properties().copy.status
            if status != "success":
                raise TransientError(f"the server-side copy ended as {status}", key=dest_key)
            if checked == {}:
                dest.set_blob_metadata({})
        except AzureError as error:
            raise map_error(error, key=dest_key, operation="copy") from None
        return self.head(dest_key)

    # --- reading --------------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        check_key(key)
        try:
            props = self._container.get_blob_client(key).get_blob_properties()
        except AzureError as error:
            raise map_error(error, key=key, operation="head") from None
        return ObjectInfo(key=key, size=int(props.size or 0), etag=_etag(props.etag), modified=props.last_modified,
                          metadata=dict(props.metadata or {}), version=getattr(props, "version_id", None))

    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        check_key(key)
        if offset < 0 or (length is not None and length < 0):
            raise PermanentError("offset and length must not be negative", key=key)
        if length == 0:
            self.head(key)
            return io.BytesIO(b"")
        blob = self._container.get_blob_client(key)
        try:
            # The downloader pins the blob's ETag, so a blob replaced mid-read fails the read.
            ranged = offset > 0 or length is not None
            downloader = blob.download_blob(offset=offset if ranged else None, length=length, max_concurrency=1)
        except HttpResponseError as error:
            if error.status_code == 416:  # the range starts at or past the end
                self.head(key)
                return io.BytesIO(b"")
            raise map_error(error, key=key, operation="read") from None
        except AzureError as error:
            raise map_error(error, key=key, operation="read") from None
        return io.BufferedReader(_Download(downloader, key), buffer_size=1 * MiB)

    # --- listing --------------------------------------------------------------------------------

    def list(self, prefix: str = "", *, marker: str = "", max_items: int = 1000,
             delimiter: str | None = None) -> ListPage:
        if max_items < 1:
            raise PermanentError("max_items must be at least 1")
        context = (self.account_url, self.container, prefix, delimiter or "")
        token = None
        if marker:
            with _TOKENS_LOCK:
                token = _TOKENS.get((*context, marker))
        try:
            return self._list(prefix, marker, max_items, delimiter, context, token)
        except HttpResponseError as error:
            if token is None or error.status_code != 400:
                raise map_error(error, key=None, operation="list") from None
        except AzureError as error:
            raise map_error(error, key=None, operation="list") from None
        try:  # a remembered token the service no longer takes: scan from the start instead
            return self._list(prefix, marker, max_items, delimiter, context, None)
        except AzureError as error:
            raise map_error(error, key=None, operation="list") from None

    def _list(self, prefix: str, marker: str, max_items: int, delimiter: str | None,
              context: tuple[str, str, str, str], token: str | None) -> ListPage:
        per_page = min(MAX_RESULTS, max_items + 1)
        if delimiter:
            pager = self._container.walk_blobs(name_starts_with=prefix or None, delimiter=delimiter,
                                               results_per_page=per_page).by_page(continuation_token=token)
        else:
            pager = self._container.list_blobs(name_starts_with=prefix or None,
                                               results_per_page=per_page).by_page(continuation_token=token)
        entries: list[tuple[str, ObjectInfo | None]] = []
        page_start = token
        for page in pager:
            # The SDK puts a page's prefixes before its blobs; a page is one range of names, so
            # sorting it restores key order.
            for item in sorted(page, key=lambda entry: entry.name):
                name = item.name
                is_prefix = isinstance(item, BlobPrefix)
                if skip_for_marker(name, marker, prefix, delimiter) or (entries and entries[-1][0] == name):
                    continue
                if len(entries) == max_items:
                    last = entries[-1][0]
                    if page_start is not None:
                        with _TOKENS_LOCK:
                            _TOKENS[(*context, last)] = page_start
                            _TOKENS.move_to_end((*context, last))
                            while len(_TOKENS) > _TOKEN_CACHE_SIZE:
                                _TOKENS.popitem(last=False)
                    return make_page(entries, last)
                info = None if is_prefix else ObjectInfo(
                    key=name, size=int(item.size or 0), etag=_etag(item.etag), modified=item.last_modified)
                entries.append((name, info))
            page_start = pager.continuation_token
            if not page_start:
                break
        return make_page(entries, None)

    # --- deleting -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self._container.get_blob_client(key).delete_blob()
        except ResourceNotFoundError as error:
            if error.error_code == "ContainerNotFound":
                raise map_error(error, key=key, operation="delete") from None
        except AzureError as error:
            raise map_error(error, key=key, operation="delete") from None


class _Download(io.RawIOBase):
    """The SDK's downloader as a raw stream whose errors are driver errors."""

    def __init__(self, downloader: Any, key: str) -> None:
        super().__init__()
        self._downloader = downloader
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._downloader.read(len(buffer))
        except AzureError as error:
            raise map_error(error, key=self._key, operation="read") from None
        buffer[: len(data)] = data
        return len(data)


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None
