"""What the estate serializers share: the adapter for ``sites.validators`` rules and the
write-only credential fields of buckets and data stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hub.secrets import MASK, mask
from sites.validators import validate_secret

T = TypeVar("T")


def as_drf(check: Callable[[Any], T], value: Any) -> T:
    """Run a ``sites.validators`` (or ``sites.shares``) rule, answering its Django
    ValidationError as a DRF one."""
    try:
        return check(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from None


class _Keep:
    """Marks a secret the request did not change (the mask was sent back)."""

    def __repr__(self) -> str:
        return "<unchanged secret>"


KEEP = _Keep()


class MaskedField(serializers.Field):
    """A write-only value: every representation shows ``hub.secrets.mask`` of it (``"********"``
    when set, ``""`` when not), and the mask sent back (a form that round-trips what it read)
    means "unchanged": the field's value is then ``KEEP``, which the serializer must treat as if
    the field were omitted. Subclasses check a new value in ``to_secret``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return mask(value)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and data == MASK:
            return KEEP
        return self.to_secret(data)

    def to_secret(self, data: Any) -> Any:
        raise NotImplementedError


@extend_schema_field(OpenApiTypes.STR)
class SecretField(MaskedField):
    """A credential string (``""`` clears it). Refused, without quoting it: anything but a
    string, more than ``max_length`` characters, white space or control characters, and the
    encrypted storage format (``fernet:...``)."""

    def __init__(self, *, max_length: int, **kwargs: Any) -> None:
        self.max_length = max_length
        super().__init__(**kwargs)

    def to_secret(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        if len(data) > self.max_length:
            raise serializers.ValidationError(f"Must have at most {self.max_length} characters.")
        as_drf(validate_secret, data)
        return data
