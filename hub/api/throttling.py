"""Throttles whose rates are read when used (DRF's bind them once, at import)."""

from __future__ import annotations

from rest_framework import throttling
from rest_framework.settings import api_settings


class _LiveRatesMixin:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonThrottle(_LiveRatesMixin, throttling.AnonRateThrottle):
    """Per client address, for callers without credentials (THROTTLE_ANON)."""


class UserThrottle(_LiveRatesMixin, throttling.UserRateThrottle):
    """Per user, for signed-in callers (THROTTLE_USER)."""


class AuthThrottle(_LiveRatesMixin, throttling.ScopedRateThrottle):
    """Per address, on the credential endpoints, against password guessing (THROTTLE_AUTH)."""
