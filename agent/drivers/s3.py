"""Amazon S3 and S3-compatible stores (boto3, with s3transfer for multipart uploads and copies).

The bucket's fields: ``name`` (the S3 bucket), ``endpoint``/``port``/``scheme`` (empty endpoint:
AWS itself), ``region``, ``ssl_verify``, ``access_key_id``/``secret_access_key`` (both empty:
boto3's default chain - environment, instance role). ``advanced_settings`` (all optional):

* ``part_size`` - multipart part size in bytes (default 8 MiB; S3's minimum is 5 MiB) and
  ``multipart_threshold`` (default: the part size) - objects at least this big go multipart.
* ``max_concurrency`` - parts in flight per upload (default 4).
* ``addressing_style`` - ``path``, ``virtual`` or ``auto`` (default ``path`` with a custom
  endpoint, which is what S3-compatible servers expect, else ``auto``).
* ``ca_bundle`` - a CA file to verify the endpoint with; ``ssl_verify`` false skips checks.
* ``max_attempts`` (default 3), ``connect_timeout`` (10 s), ``read_timeout`` (60 s) - botocore's
  own retries, below the agent's retry-with-backoff of ``TransientError``.
* ``conditional_writes`` (default true) - send ``If-None-Match: *`` for ``if_absent``.
* ``trust_conditional_writes`` - ``auto`` (default), true or false: whether ``if_absent`` may rely
  on the server refusing ``If-None-Match: *`` over an existing object, and skip the ``HEAD``
  that checks first. ``auto`` finds out once per driver instance, at the first ``if_absent`` put:
  it writes a probe object (``.hub-probe/<random>``) twice with the header and trusts the server
  only if the second write is refused (412), then deletes the probe; any error means "do not
  trust". AWS, MinIO and moto honour the header; rclone serve s3 ignores it.
* ``checksums`` - ``when_required`` (default, which every S3-compatible server accepts) or
  ``when_supported`` (botocore adds CRC checksums to uploads; AWS and recent servers).

``if_absent``: the driver uploads with ``If-None-Match: *`` on the ``PutObject`` or
``CompleteMultipartUpload`` (AWS since 2024, MinIO, moto): there, two racing writers cannot both
win, and no ``HEAD`` is needed first. On servers not (known to be) honouring it (rclone serve s3,
older appliances; see ``trust_conditional_writes``) the driver first checks that the key is free
(``HEAD``), which is best effort: a writer racing between the check and the upload can still be
overwritten. Servers that refuse the header (501): set ``conditional_writes`` false.

Verification: an object smaller than the multipart threshold goes up in one ``PutObject``, whose
answer's ETag S3 (and MinIO, moto, rclone) computes as the MD5 of the bytes it received. The
driver compares it with the MD5 of the bytes it sent; equal, the put returns an ``ObjectInfo``
marked ``verified`` (the server stored those bytes, with the metadata of the same request), and
the agent skips the ``HEAD`` it would verify with. Any other ETag (SSE-KMS, SSE-C, a server that
does not use MD5) leaves the put unverified, and the ``HEAD`` is made as before.

Memory: an upload holds about ``max_concurrency + 2`` parts (s3transfer reads the stream into
part-sized buffers, at most ``max_concurrency`` waiting besides those in flight): measured 48 MiB
with the defaults, whatever the object's size. A download holds a few times the caller's read
size. A failed upload is aborted (``AbortMultipartUpload``), so no part of it becomes visible and
a previous object stays.

Errors: 404/NoSuchKey/NoSuchBucket -> NotFound; 403/AccessDenied/InvalidAccessKeyId/
SignatureDoesNotMatch/missing credentials -> AccessDenied; throttling, 5xx, broken connections and
timeouts -> TransientError; the rest -> PermanentError. Messages carry the S3 error code and the
HTTP status, never credentials.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any, BinaryIO

import boto3
import botocore.exceptions as bce
from botocore.config import Config
from s3transfer.manager import TransferConfig, TransferManager

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
GiB = 1024 * MiB
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB
# CopyObject takes objects up to 5 GiB in one request; only bigger ones need a multipart copy
# (UploadPartCopy, which some S3-compatible servers such as rclone do not implement).
COPY_THRESHOLD = 5 * GiB
COPY_PART_SIZE = 512 * MiB

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404", "NoSuchVersion"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "ExpiredToken",
           "InvalidToken", "AccountProblem", "InvalidSecurity", "403", "401", "Forbidden", "Unauthorized"}
_TRANSIENT = {"SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "RequestTimeout",
              "RequestTimeoutException", "InternalError", "ServiceUnavailable", "RequestLimitExceeded",
              "TooManyRequests", "ConditionalRequestConflict", "OperationAborted", "BandwidthLimitExceeded"}
_PRECONDITION = {"PreconditionFailed", "412"}
_TRANSPORT_ERRORS = (bce.ConnectionError, bce.HTTPClientError, bce.IncompleteReadError, bce.ChecksumError)
_CREDENTIAL_ERRORS = (bce.NoCredentialsError, bce.PartialCredentialsError, bce.CredentialRetrievalError)


def map_error(error: BaseException, *, key: str | None, operation: str) -> DriverError:
    """The driver error for a botocore/s3transfer exception (see the module docstring)."""
    if isinstance(error, DriverError):
        return error
    if isinstance(error, bce.ClientError):
        info = error.response.get("Error", {}) or {}
        code = str(info.get("Code") or "")
        status = int((error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        message = f"S3 {operation} failed: {code or 'error'} (HTTP {status or '?'})"
        if code in _NOT_FOUND or status == 404:
            return NotFound(message, key=key)
        if code in _DENIED or status in (401, 403):
            return AccessDenied(message, key=key)
        if code in _PRECONDITION or status == 412:
            return AlreadyExists(message, key=key)
        if code in _TRANSIENT or status in (408, 429) or status >= 500:
            return TransientError(message, key=key)
        return PermanentError(message, key=key)
    if isinstance(error, _CREDENTIAL_ERRORS):
        return AccessDenied(f"S3 {operation} failed: no usable credentials", key=key)
    if isinstance(error, _TRANSPORT_ERRORS):
        return TransientError(f"S3 {operation} failed: {type(error).__name__}", key=key)
    if isinstance(error, bce.ParamValidationError):
        return PermanentError(f"S3 {operation} failed: invalid request", key=key)
    if isinstance(error, bce.BotoCoreError):
        return PermanentError(f"S3 {operation} failed: {type(error).__name__}", key=key)
    return PermanentError(f"S3 {operation} failed: {type(error).__name__}", key=key)


_SDK_ERRORS = (bce.ClientError, bce.BotoCoreError)


class S3Store(ObjectStore):
    """One S3 bucket. Thread-safe: boto3 clients and the transfer manager may be shared."""

    storage_type = "s3"

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 verify: bool | str = True, addressing_style: str | None = None,
                 part_size: int = DEFAULT_PART_SIZE, multipart_threshold: int | None = None,
                 max_concurrency: int = 4, max_attempts: int = 3, connect_timeout: float = 10,
                 read_timeout: float = 60, conditional_writes: bool = True,
                 trust_conditional_writes: bool | None = None, checksums: str = "when_required") -> None:
        if not bucket:
            raise PermanentError("an S3 bucket needs a name")
        if addressing_style not in (None, "path", "virtual", "auto"):
            raise PermanentError(f"addressing_style must be path, virtual or auto, not {addressing_style!r}")
        if checksums not in ("when_required", "when_supported"):
            raise PermanentError(f"checksums must be when_required or when_supported, not {checksums!r}")
        self.bucket = bucket
        self.endpoint_url = endpoint_url or None
        self.region = region or "us-east-1"
        self.part_size = max(part_size, MIN_PART_SIZE)
        self.multipart_threshold = multipart_threshold or self.part_size
        self.max_concurrency = max(1, max_concurrency)
        self.conditional_writes = conditional_writes
        # None: not known yet (probed at the first if_absent put). Never trusted without the header.
        self._trusted: bool | None = trust_conditional_writes if conditional_writes else False
        self._probe_lock = threading.Lock()
        session = boto3.session.Session(aws_access_key_id=access_key_id or None,
                                        aws_secret_access_key=secret_access_key or None,
                                        region_name=self.region)
        config = Config(
            s3={"addressing_style": addressing_style or ("path" if self.endpoint_url else "auto")},
            retries={"max_attempts": max(1, max_attempts), "mode": "standard"},
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            max_pool_connections=max(10, self.max_concurrency * 2),
            request_checksum_calculation=checksums, response_checksum_validation=checksums,
        )
        self._client = session.client("s3", endpoint_url=self.endpoint_url, verify=verify, config=config)
        # If-None-Match for if_absent: s3transfer does not pass it through, so it is added to the
        # PutObject / CompleteMultipartUpload of the keys with a conditional upload in flight.
        self._conditional: Counter[str] = Counter()
        self._conditional_lock = threading.Lock()
        for operation in ("PutObject", "CompleteMultipartUpload"):
            self._client.meta.events.register(f"before-parameter-build.s3.{operation}", self._add_condition)
        self._transfer_config = TransferConfig(
            multipart_threshold=self.multipart_threshold, multipart_chunksize=self.part_size,
            max_request_concurrency=self.max_concurrency, max_in_memory_upload_chunks=self.max_concurrency,
        )
        self._copy_config = TransferConfig(multipart_threshold=COPY_THRESHOLD, multipart_chunksize=COPY_PART_SIZE,
                                           max_request_concurrency=self.max_concurrency)
        self._manager: TransferManager | None = None
        self._copy_manager: TransferManager | None = None
        self._manager_lock = threading.Lock()

    @classmethod
    def from_bucket(cls, bucket: Mapping[str, Any]) -> S3Store:
        advanced = bucket.get("advanced_settings") or {}
        endpoint = str(bucket.get("endpoint") or "").strip()
        endpoint_url = None
        if endpoint:
            scheme = str(bucket.get("scheme") or "https")
            endpoint_url = endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
            if bucket.get("port"):
                endpoint_url += f":{int(bucket['port'])}"
        verify: bool | str = as_bool(bucket.get("ssl_verify"), True)
        if verify and advanced.get("ca_bundle"):
            verify = str(advanced["ca_bundle"])
        part_size = as_int(advanced.get("part_size"), DEFAULT_PART_SIZE, minimum=MIN_PART_SIZE)
        return cls(
            str(bucket.get("name") or ""), endpoint_url=endpoint_url, region=str(bucket.get("region") or ""),
            access_key_id=str(bucket.get("access_key_id") or ""),
            secret_access_key=str(bucket.get("secret_access_key") or ""), verify=verify,
            addressing_style=advanced.get("addressing_style") or None, part_size=part_size,
            multipart_threshold=as_int(advanced.get("multipart_threshold"), part_size, minimum=1),
            max_concurrency=as_int(advanced.get("max_concurrency"), 4, minimum=1),
            max_attempts=as_int(advanced.get("max_attempts"), 3, minimum=1),
            connect_timeout=as_int(advanced.get("connect_timeout"), 10, minimum=1),
            read_timeout=as_int(advanced.get("read_timeout"), 60, minimum=1),
            conditional_writes=as_bool(advanced.get("conditional_writes"), True),
            trust_conditional_writes=_auto_bool(advanced.get("trust_conditional_writes")),
            checksums=str(advanced.get("checksums") or "when_required"),
        )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r}, region={self.region!r})"

    def _transfer(self) -> TransferManager:
        with self._manager_lock:
            if self._manager is None:
                self._manager = TransferManager(self._client, self._transfer_config)
            return self._manager

    def _copier(self) -> TransferManager:
        with self._manager_lock:
            if self._copy_manager is None:
                self._copy_manager = TransferManager(self._client, self._copy_config)
            return self._copy_manager

    def close(self) -> None:
        with self._manager_lock:
            for manager in (self._manager, self._copy_manager):
                if manager is not None:
                    manager.shutdown()
            self._manager = self._copy_manager = None
        self._client.close()

    def upload_part_size(self, size: int) -> int | None:
        """The part size s3transfer will use for ``size`` bytes (its own rule: doubled until the
        upload fits S3's 10 000 parts), or None below the multipart threshold."""
        if size < self.multipart_threshold:
            return None
        part = self.part_size
        while math.ceil(size / part) > 10_000:
            part *= 2
        return part

    def trusts_conditional_writes(self) -> bool:
        """Whether ``If-None-Match: *`` is known to be enforced here (probed once; see the module
        docstring). Thread-safe; a failed probe is not retried by this instance."""
        if self._trusted is None:
            with self._probe_lock:
                if self._trusted is None:
                    self._trusted = self._probe_conditional_writes()
        return self._trusted

    def _probe_conditional_writes(self) -> bool:
        key = f".hub-probe/{uuid.uuid4().hex}"
        with self._conditional_lock:
            self._conditional[key] += 1
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=b"1")
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=b"2")
            except bce.ClientError as error:
                return isinstance(map_error(error, key=key, operation="probe"), AlreadyExists)
            return False
        except _SDK_ERRORS:
            return False
        finally:
            with self._conditional_lock:
                del self._conditional[key]
            try:
                self._client.delete_object(Bucket=self.bucket, Key=key)
            except _SDK_ERRORS:
                pass  # a leftover probe object is harmless (a few bytes under .hub-probe/)

    def _add_condition(self, params: dict[str, Any], **_: Any) -> None:
        if params.get("Bucket") == self.bucket and self._conditional.get(params.get("Key", "")):
            params["IfNoneMatch"] = "*"

    # --- writing --------------------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            metadata: Mapping[str, str] | None = None, if_absent: bool = False) -> ObjectInfo:
        check_key(key)
        checked = check_metadata(metadata)
        if if_absent and not self.trusts_conditional_writes() and self.exists(key):
            raise AlreadyExists("object exists", key=key)
        reader = CheckedReader(stream, size, key=key)
        verified = False
        extra = {"Metadata": checked} if checked else {}
        conditional = if_absent and self.conditional_writes
        if conditional:
            with self._conditional_lock:
                self._conditional[key] += 1
        try:
            if size is not None and size < self.multipart_threshold:
                # s3transfer would send this as one PutObject too, but after two thread hand-offs
                # that cost more than the request itself for a small file. The bytes are read and
                # their count checked (the read past the size proves the stream ends there)
                # before anything is sent, as on the streaming path.
                data = reader.read(size)
                reader.read(1)
                response = self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
                # The ETag of a single PutObject is the MD5 the server computed over what it
                # received (unless encryption with KMS/customer keys changes it): equal to ours,
                # the bytes stored are the bytes sent.
                verified = _etag(response.get("ETag")) == hashlib.md5(data, usedforsecurity=False).hexdigest()
            else:
                self._transfer().upload(reader, self.bucket, key, extra_args=extra).result()
        except _SDK_ERRORS as error:
            mapped = map_error(error, key=key, operation="upload")
            if isinstance(mapped, AlreadyExists) and not if_absent:
                mapped = PermanentError(str(mapped), key=key)
            raise mapped from None
        finally:
            if conditional:
                with self._conditional_lock:
                    self._conditional[key] -= 1
                    if self._conditional[key] <= 0:
                        del self._conditional[key]
        return ObjectInfo(key=key, size=reader.count, metadata=checked, verified=verified)

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        check_key(source_key)
        check_key(dest_key)
        extra: dict[str, Any] = {}
        if metadata is not None:
            extra = {"MetadataDirective": "REPLACE", "Metadata": check_metadata(metadata)}
        try:
            self._copier().copy({"Bucket": self.bucket, "Key": source_key}, self.bucket, dest_key,
                                extra_args=extra).result()
        except _SDK_ERRORS as error:
            raise map_error(error, key=source_key, operation="copy") from None
        return self.head(dest_key)

    # --- reading --------------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        check_key(key)
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        except _SDK_ERRORS as error:
            raise map_error(error, key=key, operation="head") from None
        return ObjectInfo(
            key=key, size=int(response.get("ContentLength") or 0), etag=_etag(response.get("ETag")),
            modified=response.get("LastModified"),
            metadata={name.lower(): value for name, value in (response.get("Metadata") or {}).items()},
            version=response.get("VersionId"),
        )

    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        check_key(key)
        if offset < 0 or (length is not None and length < 0):
            raise PermanentError("offset and length must not be negative", key=key)
        if length == 0:
            self.head(key)
            return io.BytesIO(b"")
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset or length is not None:
            request["Range"] = f"bytes={offset}-" + ("" if length is None else str(offset + length - 1))
        try:
            response = self._client.get_object(**request)
        except bce.ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidRange":
                self.head(key)  # NotFound if it is missing; else the range starts at or past the end
                return io.BytesIO(b"")
            raise map_error(error, key=key, operation="get") from None
        except _SDK_ERRORS as error:
            raise map_error(error, key=key, operation="get") from None
        return io.BufferedReader(_Body(response["Body"], key), buffer_size=1 * MiB)

    # --- listing --------------------------------------------------------------------------------

    def list(self, prefix: str = "", *, marker: str = "", max_items: int = 1000,
             delimiter: str | None = None) -> ListPage:
        if max_items < 1:
            raise PermanentError("max_items must be at least 1")
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": min(1000, max_items + 1)}
        if delimiter:
            request["Delimiter"] = delimiter
        if marker:
            request["StartAfter"] = marker
        entries: list[tuple[str, ObjectInfo | None]] = []
        while True:
            try:
                response = self._client.list_objects_v2(**request)
            except _SDK_ERRORS as error:
                raise map_error(error, key=None, operation="list") from None
            # One page covers a contiguous range of keys: objects and prefixes merge in order.
            page: list[tuple[str, ObjectInfo | None]] = [
                (item["Key"], ObjectInfo(key=item["Key"], size=int(item.get("Size") or 0),
                                         etag=_etag(item.get("ETag")), modified=item.get("LastModified")))
                for item in response.get("Contents") or []
            ]
            page += [(item["Prefix"], None) for item in response.get("CommonPrefixes") or []]
            page.sort(key=lambda entry: entry[0])
            for entry, info in page:
                if skip_for_marker(entry, marker, prefix, delimiter) or (entries and entries[-1][0] == entry):
                    continue
                if len(entries) == max_items:
                    return make_page(entries, entries[-1][0])
                entries.append((entry, info))
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                return make_page(entries, None)
            request["ContinuationToken"] = token

    # --- deleting -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except bce.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return  # some S3-compatible servers answer 404 for a missing key
            raise map_error(error, key=key, operation="delete") from None
        except _SDK_ERRORS as error:
            raise map_error(error, key=key, operation="delete") from None


class _Body(io.RawIOBase):
    """botocore's streaming body as a raw stream whose errors are driver errors."""

    def __init__(self, body: Any, key: str) -> None:
        super().__init__()
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._body.read(len(buffer))
        except _SDK_ERRORS as error:
            raise map_error(error, key=self._key, operation="read") from None
        except OSError as error:  # urllib3 protocol and timeout errors
            raise TransientError(f"S3 read failed: {type(error).__name__}", key=self._key) from None
        except Exception as error:  # urllib3.exceptions.ProtocolError and friends
            if type(error).__module__.startswith("urllib3"):
                raise TransientError(f"S3 read failed: {type(error).__name__}", key=self._key) from None
            raise
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def _auto_bool(value: object) -> bool | None:
    """``auto`` (or nothing) -> None (find out), else a true/false setting."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    return as_bool(value, False)


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None

