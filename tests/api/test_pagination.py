"""Pagination as the reference describes it, on a list of 10 000 users."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hub.models import AuditEvent

User = get_user_model()
ROWS = 10_000


@pytest.fixture(scope="module")
def _bulk_users(django_db_setup, django_db_blocker):
    """10 000 users committed once for the module (creating them per test would dominate its time)."""
    with django_db_blocker.unblock():
        User.objects.bulk_create([User(username=f"bulk{i:05d}") for i in range(ROWS)], batch_size=2000)
    yield
    with django_db_blocker.unblock():
        User.objects.filter(username__startswith="bulk").delete()


@pytest.fixture
def many_users(_bulk_users, admin_user):
    count = User.objects.count()
    assert count > ROWS
    return count


def page(client, size):
    params = {} if size is None else {"page_size": size}
    return client.get(reverse("user-list"), params)


@pytest.mark.django_db
@pytest.mark.parametrize("size, expected", [
    (None, 20), ("", 20), (1, 20), (19, 20), (20, 20), (21, 21), (100, 100), (101, 100), (10_000, 100), (-5, 20),
])
def test_page_size_rules(admin, many_users, size, expected):
    response = page(admin, size)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == many_users
    assert len(body["results"]) == expected
    assert body["previous"] is None and "page=2" in body["next"]


@pytest.mark.django_db
def test_page_size_zero_streams_every_row(admin, many_users):
    response = page(admin, 0)
    assert response.status_code == 200 and response.streaming
    body = json.loads(b"".join(response.streaming_content))
    assert body["count"] == many_users and body["next"] is None and body["previous"] is None
    assert len(body["results"]) == many_users
    assert len({u["username"] for u in body["results"]}) == many_users


@pytest.mark.django_db
def test_non_numeric_page_size_and_page_are_400(admin, many_users):
    assert page(admin, "ten").status_code == 400
    assert "page_size" in page(admin, "ten").json()
    bad_page = admin.get(reverse("user-list"), {"page": "abc"})
    assert bad_page.status_code == 400 and "page" in bad_page.json()
    assert admin.get(reverse("user-list"), {"page": 0}).status_code == 400
    assert admin.get(reverse("user-list"), {"page": 100_000}).status_code == 404


@pytest.mark.django_db
def test_last_page_and_navigation(admin, many_users):
    last_page = -(-many_users // 100)
    last = admin.get(reverse("user-list"), {"page_size": 100, "page": last_page}).json()
    assert len(last["results"]) == many_users - 100 * (last_page - 1)
    assert last["next"] is None and f"page={last_page - 1}" in last["previous"]


@pytest.mark.django_db
def test_query_count_does_not_grow_with_page_size(admin, many_users):
    def queries(size):
        with CaptureQueriesContext(connection) as captured:
            assert page(admin, size).status_code == 200
        return len(captured)

    assert queries(20) == queries(100)


@pytest.mark.django_db
def test_streamed_listing_reads_in_chunks(admin, many_users):
    with CaptureQueriesContext(connection) as captured:
        response = page(admin, 0)
        b"".join(response.streaming_content)
    # count + (rows + groups prefetch) per chunk of 2000 + authentication; not one per row.
    assert len(captured) < 40


@pytest.mark.django_db
def test_audit_list_of_10000_events_pages_in_constant_queries(admin):
    AuditEvent.objects.bulk_create([AuditEvent(action="create", username="x") for _ in range(ROWS)],
                                   batch_size=2000)
    url = reverse("auditevent-list")
    with CaptureQueriesContext(connection) as small:
        assert admin.get(url, {"page_size": 20}).json()["count"] == ROWS
    with CaptureQueriesContext(connection) as large:
        assert len(admin.get(url, {"page_size": 100}).json()["results"]) == 100
    assert len(small) == len(large)
