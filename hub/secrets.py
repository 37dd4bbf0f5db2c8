"""Secrets at rest: a model field that stores values encrypted and a mask for showing them.

Bucket and data-store credentials are kept with Fernet (AES-128-CBC + HMAC-SHA256) under the
keys in ``settings.HUB_FIELD_ENCRYPTION_KEYS``. The first key encrypts and every key decrypts,
so rotating a key is: put the new key first, restart, re-save the rows (``rotate_secrets``),
then drop the old key. The database never holds a plaintext credential, so a dump or a backup
of it does not leak the estate's cloud keys; ``dumpdata`` writes the ciphertext too (and
``loaddata`` decrypts it back), so a fixture does not leak them either.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models

PREFIX = "fernet:"
MASK = "********"


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "HUB_FIELD_ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes"
        ) from exc


def cipher() -> MultiFernet:
    return _fernet(tuple(settings.HUB_FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return PREFIX + cipher().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ValueError("stored secret is not encrypted")
    try:
        return cipher().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with HUB_FIELD_ENCRYPTION_KEYS (was a key removed?)"
        ) from exc


def mask(value: str | None) -> str:
    """What the API shows for a secret: a fixed mask when one is set, empty otherwise."""
    return MASK if value else ""


class EncryptedTextField(models.TextField):
    """A text column whose value is encrypted before it is written.

    Python code sees plaintext; the column holds ``fernet:<token>``. Empty values are stored as
    an empty string so "no secret" stays distinguishable without decrypting anything. The
    column cannot be filtered or indexed on, by design.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        if not value:
            return ""
        return decrypt(value)

    def get_prep_value(self, value: Any) -> str:
        value = super().get_prep_value(value)
        if not value:
            return ""
        return encrypt(str(value))

    def to_python(self, value: Any) -> Any:
        """Plaintext as given; a ``fernet:`` token (what ``value_to_string`` writes into a dump) is
        decrypted, so ``loaddata`` restores the secret rather than storing the token as one."""
        value = super().to_python(value)
        if isinstance(value, str) and value.startswith(PREFIX):
            try:
                return cipher().decrypt(value[len(PREFIX):].encode()).decode()
            except InvalidToken:
                raise ValidationError(
                    "An encrypted value ('fernet:...') that HUB_FIELD_ENCRYPTION_KEYS cannot decrypt.",
                    code="undecryptable",
                ) from None
        return value

    def value_to_string(self, obj: models.Model) -> str:
        """What serializers (``dumpdata``) write: ciphertext, so a dump never holds a credential."""
        value = self.value_from_object(obj)
        return encrypt(str(value)) if value else ""
