"""Building S3 stores on the local servers (shared by the moto and rclone test modules)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
from botocore.config import Config

from agent.drivers.registry import open_store
from agent.drivers.s3 import S3Store
from tests.agent import servers

PART_SIZE = 5 * 1024 * 1024  # S3's minimum, so the contract's LARGE object takes three parts


def s3_bucket(server: servers.Server, name: str, **advanced: Any) -> dict[str, Any]:
    """A bucket description as the hub sends it."""
    return {
        "storage_type": "s3", "name": name, "endpoint": server.host, "port": server.port, "scheme": "http",
        "region": "us-east-1", "ssl_verify": True, "access_key_id": servers.S3_ACCESS_KEY,
        "secret_access_key": servers.S3_SECRET_KEY,
        "advanced_settings": {"part_size": PART_SIZE, "max_concurrency": 2, "max_attempts": 2, **advanced},
    }


def admin_client(server: servers.Server) -> Any:
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=servers.S3_ACCESS_KEY, aws_secret_access_key=servers.S3_SECRET_KEY,
                        config=Config(s3={"addressing_style": "path"}))


def new_store(server: servers.Server, name: str, **advanced: Any) -> S3Store:
    """A store on a new bucket; it counts the parts it uploads per key (``store.parts_sent``)."""
    admin_client(server).create_bucket(Bucket=name)
    store = open_store(s3_bucket(server, name, **advanced))
    assert isinstance(store, S3Store)
    sent: Counter[str] = Counter()

    def count_part(params: dict[str, Any], **_: Any) -> None:
        sent[params["Key"]] += 1

    store._client.meta.events.register("before-parameter-build.s3.UploadPart", count_part)
    store.parts_sent = sent  # type: ignore[attr-defined]
    return store


def assert_s3_multipart(store: Any, key: str) -> None:
    """The object went up as a multipart upload of ceil(size / part size) parts."""
    parts = -(-store.head(key).size // PART_SIZE)
    assert store.parts_sent[key] == parts, f"{key}: {store.parts_sent[key]} parts sent, {parts} expected"
