"""Strict readers for settings that come from the environment.

Every setting the hub takes from the environment goes through one of these helpers so that a
typo ("ture", "80s", "postgress://") stops the process at start-up with a message naming the
variable, instead of silently falling back to a default and surprising an operator later.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value if value != "" else None


def env_str(name: str, default: str | None = None) -> str | None:
    """A string variable; empty counts as unset."""
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use one of {sorted(_TRUE | _FALSE)}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum {minimum}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum {maximum}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blanks between commas are dropped."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


_RATE = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")


def env_rate(name: str, default: str | None) -> str | None:
    """A DRF throttle rate such as ``100/min``; ``none`` disables the throttle."""
    value = _raw(name)
    if value is None:
        return default
    if value.lower() == "none":
        return None
    if not _RATE.match(value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate like '100/min' or 'none'")
    return value


def write_once(path: Path, make_content: Callable[[], str]) -> str:
    """Return the content kept in ``path``, creating it (mode 0600) on first use.

    The content is written to a temporary file and hard-linked into place, so two processes
    starting together agree on one value and neither ever reads a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text()
    content = make_content()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.chmod(tmp_name, 0o600)
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return path.read_text()
    finally:
        os.unlink(tmp_name)
    return content


def read_or_create_secret(path: Path, *, length: int = 50) -> str:
    """Return the random secret kept in ``path``, generating it on first use."""
    return write_once(path, lambda: secrets.token_urlsafe(length)).strip()


def read_or_create_fernet_key(path: Path) -> str:
    """Return the Fernet key kept in ``path`` (32 url-safe base64 bytes), generating it once."""
    return write_once(path, lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()).strip()
