"""Personas, API clients and the rule that CI runs every test.

Personas (STYLE.md): ``admin`` (member of Administrators, not a superuser, so the group's grants
are what is tested), ``owner`` (owns the object under test), ``member`` (granted a permission on
it), ``outsider`` (signed in, no grants: 404 and empty lists), anonymous (401).
"""

from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from tests.factories import UserFactory, administrators, client_key

REQUIRE_ALL = os.environ.get("HUB_REQUIRE_ALL_TESTS", "") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under HUB_REQUIRE_ALL_TESTS=1 (set by .ci/run) a skipped test is a failed test."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under HUB_REQUIRE_ALL_TESTS=1: {reason}"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's rounds would dominate the suite; hashing strength is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_throttling(settings, request):
    """Throttles are tested on purpose (test_throttling); elsewhere they only add flakiness."""
    from django.core.cache import cache

    cache.clear()
    if "throttled" in request.keywords:
        return
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {"anon": None, "user": None, "auth": None}
    settings.REST_FRAMEWORK = rest


def api_client(user=None) -> APIClient:
    """A client authenticated the way a real caller is: a signed RS256 access token."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin-persona", groups=[administrators()])


@pytest.fixture
def member_user(db):
    return UserFactory(username="member-persona")


@pytest.fixture
def outsider_user(db):
    return UserFactory(username="outsider-persona")


@pytest.fixture
def admin(admin_user) -> APIClient:
    return api_client(admin_user)


@pytest.fixture
def member(member_user) -> APIClient:
    return api_client(member_user)


@pytest.fixture
def outsider(outsider_user) -> APIClient:
    return api_client(outsider_user)


@pytest.fixture
def admin_key_client(admin_user) -> APIClient:
    """The admin persona again, authenticated by a client key instead of a token."""
    _, raw = client_key(admin_user, "matrix")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` unless ``condition``; under HUB_REQUIRE_ALL_TESTS=1 the skip fails."""
    if not condition:
        pytest.skip(reason)


def using_postgres() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"
