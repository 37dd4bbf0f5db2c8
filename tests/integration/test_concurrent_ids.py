"""uid/gid allocation stays unique when many creations race (PostgreSQL, real transactions)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction

from hub.models import NasGroup, NasUser
from hub.services import accounts
from tests.conftest import require, using_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8
PER_THREAD = 6


def run_concurrently(work) -> list[BaseException]:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def runner(index: int) -> None:
        try:
            barrier.wait()
            for n in range(PER_THREAD):
                with transaction.atomic():
                    work(index, n)
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_concurrent_user_creation_gets_distinct_uids():
    require(using_postgres(), "needs PostgreSQL (set DATABASE_URL=postgres://...)")
    primary = accounts.create_group(None, name="primary", nas_group=True)

    def create(index: int, n: int) -> None:
        accounts.create_user(None, username=f"race-{index}-{n}", password="Sturdy-Pass-1234",
                             nas_user={"primary_group": Group.objects.get(pk=primary.pk)})

    assert run_concurrently(create) == []
    uids = list(NasUser.objects.values_list("uid", flat=True))
    assert len(uids) == THREADS * PER_THREAD == len(set(uids))
    assert sorted(uids) == list(range(100000, 100000 + THREADS * PER_THREAD))


def test_concurrent_group_creation_gets_distinct_gids():
    require(using_postgres(), "needs PostgreSQL (set DATABASE_URL=postgres://...)")

    def create(index: int, n: int) -> None:
        accounts.create_group(None, name=f"race-{index}-{n}", nas_group=True)

    assert run_concurrently(create) == []
    gids = list(NasGroup.objects.values_list("gid", flat=True))
    assert len(gids) == THREADS * PER_THREAD == len(set(gids))
