"""Google Cloud Storage buckets (google-cloud-storage).

The bucket's fields: ``name`` (the GCS bucket), ``credentials_json`` (a service account key, as
an object or its JSON text) or ``credentials_file`` (the path of one on the agent node),
``endpoint``/``port``/``scheme``/``ssl_verify`` (empty endpoint: Google's, or
``STORAGE_EMULATOR_HOST`` when that is set). Without a key the driver uses anonymous credentials
when ``STORAGE_EMULATOR_HOST`` is set or ``advanced_settings["anonymous"]`` is true (emulators,
public buckets), the machine's default credentials when ``advanced_settings["default_credentials"]``
is true (workload identity), and refuses otherwise. ``advanced_settings`` (all optional):
``project`` (default: the key's ``project_id``), ``chunk_size`` (bytes per resumable-upload
request, a multiple of 256 KiB, default 8 MiB), ``multipart_threshold`` (objects of a declared
size up to this, at most 8 MiB, go in one request; default 8 MiB), ``download_chunk_size``
(default 8 MiB), ``connect_timeout``/``read_timeout`` (10/60 s), ``retry_timeout`` (how long the
library retries an idempotent request that failed transiently, default 30 s; 0: not at all).

Other uploads are resumable uploads sent ``chunk_size`` bytes at a time; the object is created
only by the last request, so an interrupted upload creates nothing and leaves a previous object
in place. The stream is read once and cannot be rewound, so a failed chunk fails the upload
(``TransientError``: the agent retries the whole put) rather than being resent by the library.

``if_absent`` checks first and then uploads with ``ifGenerationMatch=0``, which makes it atomic
on GCS (fake-gcs-server honours it only for single-request uploads). Reads are ranged requests
of ``download_chunk_size`` pinned to the object's generation, so an object replaced mid-read
fails the read (``TransientError``) instead of mixing two versions. Memory: one chunk per
transfer (at most 8 MiB for a single-request upload).

Errors: 404 -> NotFound; 401/403 and credentials that cannot be refreshed -> AccessDenied;
408/429/5xx, connection failures and timeouts -> TransientError; 412 on ``if_absent`` ->
AlreadyExists; the rest -> PermanentError. Messages carry the HTTP status, never credentials.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from typing import Any, BinaryIO

import google.auth
import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

try:  # google-resumable-media's errors, raised for upload chunks
    from google.resumable_media import common as resumable_common
except ImportError:  # pragma: no cover - vendored into google-cloud-storage in newer releases
    resumable_common = None

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
CHUNK_UNIT = 256 * 1024
MULTIPART_LIMIT = 8 * MiB  # google-cloud-storage's limit for single-request uploads
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)


def _status_of(error: BaseException) -> int:
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else 0


def map_error(error: BaseException, *, key: str | None, operation: str) -> DriverError:
    """The driver error for a google-cloud-storage / google-auth / requests exception."""
    if isinstance(error, DriverError):
        return error
    if isinstance(error, google.auth.exceptions.RefreshError | google.auth.exceptions.DefaultCredentialsError):
        return AccessDenied(f"GCS {operation} failed: the credentials were refused", key=key)
    if isinstance(error, google.auth.exceptions.TransportError | requests.ConnectionError | requests.Timeout):
        return TransientError(f"GCS {operation} failed: {type(error).__name__}", key=key)
    status = _status_of(error)
    if isinstance(error, api_exceptions.GoogleAPIError) or (
            resumable_common is not None and isinstance(error, resumable_common.InvalidResponse)) or status:
        message = f"GCS {operation} failed: HTTP {status or '?'}"
        if status == 404:
            return NotFound(message, key=key)
        if status in (401, 403):
            return AccessDenied(message, key=key)
        if status == 412:
            return AlreadyExists(message, key=key)
        if status in (408, 429) or status >= 500:
            return TransientError(message, key=key)
        if isinstance(error, api_exceptions.RetryError):
            return TransientError(f"GCS {operation} failed: retries exhausted", key=key)
        return PermanentError(message, key=key)
    if resumable_common is not None and isinstance(error, resumable_common.DataCorruption):
        return TransientError(f"GCS {operation} failed: checksum mismatch in transfer", key=key)
    return PermanentError(f"GCS {operation} failed: {type(error).__name__}", key=key)


_SDK_ERRORS: tuple[type[BaseException], ...] = (
    api_exceptions.GoogleAPIError, google.auth.exceptions.GoogleAuthError, requests.RequestException,
) + ((resumable_common.InvalidResponse, resumable_common.DataCorruption) if resumable_common is not None else ())


def credentials_for(bucket: Mapping[str, Any]) -> tuple[Credentials, str | None]:
    """Credentials and project for a bucket (rules in the module docstring)."""
    advanced = bucket.get("advanced_settings") or {}
    raw = bucket.get("credentials_json")
    path = str(bucket.get("credentials_file") or "")
    try:
        if raw:
            info = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
            credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
            return credentials, info.get("project_id")
        if path:
            credentials = service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
            return credentials, credentials.project_id
    except (ValueError, KeyError, TypeError, OSError):
        # The parser's message could quote the key; say only what is wrong.
        raise PermanentError("the GCS service account key cannot be read (malformed or missing)") from None
    if os.environ.get("STORAGE_EMULATOR_HOST") or as_bool(advanced.get("anonymous"), False):
        return AnonymousCredentials(), None
    if as_bool(advanced.get("default_credentials"), False):
        try:
            credentials, project = google.auth.default(scopes=SCOPES)
        except google.auth.exceptions.DefaultCredentialsError:
            raise AccessDenied("no default Google credentials on this machine") from None
        return credentials, project
    raise PermanentError("a GCS bucket needs credentials_json or credentials_file")


class GCSStore(ObjectStore):
    """One GCS bucket. Not shared between threads (requests sessions are not thread-safe)."""

    storage_type = "gcs"

    def __init__(self, bucket: str, *, credentials: Credentials, project: str | None = None,
                 api_endpoint: str | None = None, verify: bool = True, chunk_size: int = 8 * MiB,
                 multipart_threshold: int = 8 * MiB, download_chunk_size: int = 8 * MiB,
                 connect_timeout: float = 10, read_timeout: float = 60, retry_timeout: float = 30) -> None:
        if not bucket:
            raise PermanentError("a GCS bucket needs a name")
        if chunk_size % CHUNK_UNIT:
            raise PermanentError(f"chunk_size must be a multiple of {CHUNK_UNIT} bytes")
        self.bucket_name = bucket
        self.api_endpoint = api_endpoint
        self.chunk_size = chunk_size
        self.multipart_threshold = multipart_threshold
        self.download_chunk_size = download_chunk_size
        self.timeout = (connect_timeout, read_timeout)
        self.retry = DEFAULT_RETRY.with_timeout(retry_timeout) if retry_timeout > 0 else None
        http = None
        if not verify:
            http = AuthorizedSession(credentials)
            http.verify = False
        self._client = storage.Client(
            project=project or "hub-agent", credentials=credentials, _http=http,
            client_options={"api_endpoint": api_endpoint} if api_endpoint else None,
        )
        self._bucket = self._client.bucket(bucket)

    @classmethod
    def from_bucket(cls, bucket: Mapping[str, Any]) -> GCSStore:
        advanced = bucket.get("advanced_settings") or {}
        credentials, project = credentials_for(bucket)
        endpoint = str(bucket.get("endpoint") or "").strip().rstrip("/")
        api_endpoint = None
        if endpoint:
            scheme = str(bucket.get("scheme") or "https")
            api_endpoint = endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
            if bucket.get("port"):
                api_endpoint += f":{int(bucket['port'])}"
        return cls(
            str(bucket.get("name") or ""), credentials=credentials,
            project=str(advanced.get("project") or "") or project, api_endpoint=api_endpoint,
            verify=as_bool(bucket.get("ssl_verify"), True),
            chunk_size=as_int(advanced.get("chunk_size"), 8 * MiB, minimum=CHUNK_UNIT),
            multipart_threshold=as_int(advanced.get("multipart_threshold"), 8 * MiB, minimum=0),
            download_chunk_size=as_int(advanced.get("download_chunk_size"), 8 * MiB, minimum=64 * 1024),
            connect_timeout=as_int(advanced.get("connect_timeout"), 10, minimum=1),
            read_timeout=as_int(advanced.get("read_timeout"), 60, minimum=1),
            retry_timeout=as_int(advanced.get("retry_timeout"), 30, minimum=0),
        )

    def __repr__(self) -> str:
        return f"GCSStore(bucket={self.bucket_name!r}, api_endpoint={self.api_endpoint!r})"

    def close(self) -> None:
        self._client.close()

    # --- writing --------------------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            metadata: Mapping[str, str] | None = None, if_absent: bool = False) -> ObjectInfo:
        check_key(key)
        checked = check_metadata(metadata)
        if if_absent and self.exists(key):
            raise AlreadyExists("object exists", key=key)
        reader = CheckedReader(stream, size, key=key)
        single = size is not None and size <= min(self.multipart_threshold, MULTIPART_LIMIT)
        blob = self._bucket.blob(key, chunk_size=None if single else self.chunk_size)
        blob.metadata = checked or None
        # The library picks a single request for any declared size up to MULTIPART_LIMIT: hide
        # the size from it when this store's threshold is lower.
        declared = size if single or (size is not None and size > MULTIPART_LIMIT) else None
        try:
            blob.upload_from_file(reader, size=declared, rewind=False, content_type="application/octet-stream",
                                  if_generation_match=0 if if_absent else None, timeout=self.timeout,
                                  retry=None)
        except _SDK_ERRORS as error:
            mapped = map_error(error, key=key, operation="upload")
            if isinstance(mapped, AlreadyExists) and not if_absent:
                mapped = PermanentError(str(mapped), key=key)
            raise mapped from None
        return ObjectInfo(key=key, size=reader.count, etag=blob.etag, modified=blob.updated, metadata=checked,
                          version=str(blob.generation) if blob.generation else None)

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        check_key(source_key)
        check_key(dest_key)
        checked = None if metadata is None else check_metadata(metadata)
        source = self._get_blob(source_key, "copy")
        wanted = dict(source.metadata or {}) if checked is None else checked
        dest = self._bucket.blob(dest_key)
        dest.metadata = wanted
        try:
            token: str | None = None
            while True:  # a rewrite of a large object takes several calls
                token, _, _ = dest.rewrite(source, token=token, if_source_generation_match=source.generation,
                                           timeout=self.timeout, retry=self.retry)
                if token is None:
                    break
            # A rewrite keeps the source's metadata for names not given: remove what is unwanted
            # (a PATCH with null values deletes names on GCS; fake-gcs-server blanks them instead).
            unwanted = set(dest.metadata or {}) - set(wanted)
            if unwanted:
                dest.metadata = {**{name: None for name in unwanted}, **wanted}
                dest.patch(timeout=self.timeout, retry=self.retry)
        except _SDK_ERRORS as error:
            mapped = map_error(error, key=dest_key, operation="copy")
            if isinstance(mapped, AlreadyExists):  # the source changed under the copy
                mapped = TransientError("the source changed during the copy", key=source_key)
            raise mapped from None
        return self._info(dest)

    # --- reading --------------------------------------------------------------------------------

    def _get_blob(self, key: str, operation: str) -> storage.Blob:
        try:
            blob = self._bucket.get_blob(key, timeout=self.timeout, retry=self.retry)
        except _SDK_ERRORS as error:
            raise map_error(error, key=key, operation=operation) from None
        if blob is None:
            raise NotFound("no such object", key=key)
        return blob

    @staticmethod
    def _info(blob: storage.Blob) -> ObjectInfo:
        return ObjectInfo(key=blob.name, size=int(blob.size or 0), etag=blob.etag, modified=blob.updated,
                          metadata=dict(blob.metadata or {}),
                          version=str(blob.generation) if blob.generation else None)

    def head(self, key: str) -> ObjectInfo:
        check_key(key)
        return self._info(self._get_blob(key, "head"))

    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        check_key(key)
        if offset < 0 or (length is not None and length < 0):
            raise PermanentError("offset and length must not be negative", key=key)
        blob = self._get_blob(key, "read")
        size = int(blob.size or 0)
        end = size if length is None else min(size, offset + length)
        if offset >= end:
            return io.BytesIO(b"")
        pinned = self._bucket.blob(key, generation=blob.generation)
        return io.BufferedReader(_Ranged(pinned, offset, end, self.download_chunk_size, self.timeout, self.retry),
                                 buffer_size=self.download_chunk_size)

    # --- listing --------------------------------------------------------------------------------

    def list(self, prefix: str = "", *, marker: str = "", max_items: int = 1000,
             delimiter: str | None = None) -> ListPage:
        if max_items < 1:
            raise PermanentError("max_items must be at least 1")
        entries: list[tuple[str, ObjectInfo | None]] = []
        pending: set[str] = set()  # prefixes seen on a page but not yet placed in key order
        placed: set[str] = set()
        try:
            iterator = self._client.list_blobs(
                self._bucket, prefix=prefix or None, delimiter=delimiter or None, start_offset=marker or None,
                page_size=min(1000, max_items + 1), timeout=self.timeout, retry=self.retry,
            )
            for page in iterator.pages:
                items = [(blob.name, self._info(blob)) for blob in page]
                pending |= set(page.prefixes) - placed
                more = iterator.next_page_token is not None
                # A page covers keys up to its last object; prefixes beyond that wait for a later
                # page (some servers send all prefixes with the first page).
                watermark = items[-1][0] if more and items else None
                ready = [p for p in pending if watermark is None or p <= watermark] if (items or not more) else []
                pending -= set(ready)
                placed |= set(ready)
                merged: list[tuple[str, ObjectInfo | None]] = sorted(
                    items + [(p, None) for p in ready], key=lambda entry: entry[0])
                for entry, info in merged:
                    if skip_for_marker(entry, marker, prefix, delimiter) or (entries and entries[-1][0] == entry):
                        continue
                    if len(entries) == max_items:
                        return make_page(entries, entries[-1][0])
                    entries.append((entry, info))
        except _SDK_ERRORS as error:
            raise map_error(error, key=None, operation="list") from None
        for entry in sorted(pending):
            if skip_for_marker(entry, marker, prefix, delimiter):
                continue
            if len(entries) == max_items:
                return make_page(entries, entries[-1][0])
            entries.append((entry, None))
        return make_page(entries, None)

    # --- deleting -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self._bucket.blob(key).delete(timeout=self.timeout, retry=self.retry)
        except api_exceptions.NotFound:
            return
        except _SDK_ERRORS as error:
            raise map_error(error, key=key, operation="delete") from None


class _Ranged(io.RawIOBase):
    """Bytes ``[start, end)`` of one generation of an object, fetched a chunk at a time."""

    def __init__(self, blob: storage.Blob, start: int, end: int, chunk: int, timeout: tuple[float, float],
                 retry: Any) -> None:
        super().__init__()
        self._retry = retry
        self._blob = blob
        self._position = start
        self._end = end
        self._chunk = chunk
        self._timeout = timeout
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._buffer:
            if self._position >= self._end:
                return 0
            last = min(self._end, self._position + self._chunk) - 1
            try:
                self._buffer = memoryview(self._blob.download_as_bytes(
                    start=self._position, end=last, raw_download=True, checksum=None, timeout=self._timeout,
                    retry=self._retry))
            except _SDK_ERRORS as error:
                mapped = map_error(error, key=self._blob.name, operation="read")
                if isinstance(mapped, NotFound):  # this generation is gone: replaced or deleted
                    mapped = TransientError("the object changed while it was read", key=self._blob.name)
                raise mapped from None
            if not self._buffer:
                raise TransientError("the object ended early while it was read", key=self._blob.name)
            self._position += len(self._buffer)
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n
