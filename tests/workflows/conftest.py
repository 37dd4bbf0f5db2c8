"""Personas and rows the job-tracking tests share: a site ``lab``, an owner persona (nobody else
is granted anything) and a job of theirs on it."""

from __future__ import annotations

import pytest

from tests.conftest import api_client
from tests.factories import SiteFactory, UserFactory
from tests.workflows.factories import JobFactory


@pytest.fixture
def owner_user(db):
    return UserFactory(username="owner-persona")


@pytest.fixture
def owner(owner_user):
    return api_client(owner_user)


@pytest.fixture
def site(db):
    return SiteFactory(name="lab")


@pytest.fixture
def job(site, owner_user):
    """A job on ``lab`` launched by the owner persona."""
    return JobFactory(site=site, owner=owner_user)
