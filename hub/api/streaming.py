"""Streamed responses for whole collections: ``page_size=0`` JSON and CSV exports.

Rows are read with ``QuerySet.iterator(chunk_size=...)`` (prefetches run per chunk) and each
chunk is serialised and sent before the next is read, so memory stays flat however many rows
there are.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from rest_framework.utils.encoders import JSONEncoder

CHUNK_SIZE = 2000


def _chunks(queryset: QuerySet, chunk_size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for obj in queryset.iterator(chunk_size=chunk_size):
        chunk.append(obj)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def stream_json_list(
    queryset: QuerySet, serialize: Callable[[list[Any]], list[dict[str, Any]]], *, chunk_size: int = CHUNK_SIZE
) -> StreamingHttpResponse:
    """``{count, next, previous, results}`` with every row, written chunk by chunk."""
    encoder = JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    count = queryset.count()

    def generate() -> Iterator[bytes]:
        yield f'{{"count":{count},"next":null,"previous":null,"results":['.encode()
        first = True
        for chunk in _chunks(queryset, chunk_size):
            parts = [encoder.encode(item) for item in serialize(chunk)]
            if not parts:
                continue
            yield (("" if first else ",") + ",".join(parts)).encode()
            first = False
        yield b"]}"

    return StreamingHttpResponse(generate(), content_type="application/json")


def stream_csv(
    queryset: QuerySet,
    header: list[str],
    row: Callable[[Any], Iterable[Any]],
    *,
    filename: str,
    chunk_size: int = CHUNK_SIZE,
) -> StreamingHttpResponse:
    """A CSV download of every row of ``queryset``."""

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for chunk in _chunks(queryset, chunk_size):
            for obj in chunk:
                writer.writerow(
                    [json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for v in row(obj)]
                )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    response = StreamingHttpResponse(generate(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
