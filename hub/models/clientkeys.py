"""Client keys: long-lived API credentials for pipelines and scripts."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

KEY_PREFIX_LENGTH = 12
# last_used is written at most this often per key: a busy pipeline must not turn every read
# into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_secret(secret: str) -> str:
    """SHA-256 of the key's secret part. The secret is 256 random bits, so no salt or stretching
    is needed; only the digest is stored, so a database dump does not leak usable keys."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ClientKey(models.Model):
    """An API key owned by a user. Shown once at creation, stored as a hash.

    The key has the form ``<prefix>.<secret>``: the prefix finds the row by index and the secret
    is checked against ``key_hash`` in constant time.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_keys")
    name = models.CharField(max_length=150)
    prefix = models.CharField(max_length=KEY_PREFIX_LENGTH, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, *, user, name: str, expires_at=None) -> tuple[ClientKey, str]:
        """Create a key and return it with its clear-text value (the only time it exists)."""
        prefix = secrets.token_hex(KEY_PREFIX_LENGTH // 2)
        secret = secrets.token_urlsafe(32)
        key = cls.objects.create(
            user=user, name=name, prefix=prefix, key_hash=hash_secret(secret), expires_at=expires_at
        )
        return key, f"{prefix}.{secret}"

    @classmethod
    def find(cls, raw_key: str) -> ClientKey | None:
        """Return the key matching ``raw_key``, or None. Does not check expiry or the user."""
        prefix, dot, secret = raw_key.partition(".")
        if not dot or len(prefix) != KEY_PREFIX_LENGTH or not secret:
            return None
        key = cls.objects.select_related("user").filter(prefix=prefix).first()
        if key is None or not hmac.compare_digest(key.key_hash, hash_secret(secret)):
            return None
        return key

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def touch(self) -> None:
        """Record use, at most once per LAST_USED_RESOLUTION (a conditional UPDATE, no read)."""
        now = timezone.now()
        if self.last_used is not None and now - self.last_used < LAST_USED_RESOLUTION:
            return
        ClientKey.objects.filter(pk=self.pk).filter(
            models.Q(last_used__isnull=True) | models.Q(last_used__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used=now)
        self.last_used = now
