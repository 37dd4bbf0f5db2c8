"""Validation rules of the estate API that more than one resource applies (pure Python: no DRF,
no database).

* Paths: spaces' mountpoints, share paths, site links, folder data stores, buckets' folders and
  credential files all go through ``clean_absolute_path`` (or its strict form,
  ``absolute_path_problem``), so every path the hub sends an agent obeys the same rules: a
  string without control characters, absolute, at most ``MAX_PATH_LENGTH`` characters, and no
  ``..`` component (``\\`` counts as a separator there: Samba and Windows clients treat it as
  one). ``..`` is refused rather than resolved: a path that climbs out of a directory is almost
  always a mistake or an attack, and silently resolving it would hide it.
* Storage naming: buckets and data stores name hosts, S3 / GCS buckets, regions and Azure
  accounts, containers and keys by the same rules.
* Secrets: what a submitted credential may be. No message here ever quotes a secret.

Each ``validate_*`` / ``clean_*`` function raises ``django.core.exceptions.ValidationError``
(DRF field validators accept it as is; ``sites.api.serializers.common.as_drf`` adapts it
elsewhere); ``problem`` turns one into a message for code that collects errors per field.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError

from hub.secrets import PREFIX

MAX_PATH_LENGTH = 4096
# Control characters (NUL, newline, tab...) never belong in a path, a name or a configuration
# value: PostgreSQL cannot store NUL, and a newline would inject a line into exports or smb.conf.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def problem(check: Callable[[Any], Any], value: Any) -> str | None:
    """The message of the ``ValidationError`` that ``check(value)`` raises; None if it passes."""
    try:
        check(value)
    except ValidationError as exc:
        return " ".join(exc.messages)
    return None


# --- paths -----------------------------------------------------------------------------------------

def has_parent_reference(value: str) -> bool:
    """Whether ``value`` has a ``..`` component, with ``/`` or ``\\`` as the separator."""
    return ".." in value.replace("\\", "/").split("/")


def _path_text(value: Any, *, absolute: bool) -> str:
    """Checks every path gets, in this order (the first failure is the message)."""
    if not isinstance(value, str):
        raise ValidationError("Give the path as a string.")
    if CONTROL_CHARACTERS.search(value):
        raise ValidationError("The path contains a control character (NUL, newline, tab...).")
    if absolute and not value.startswith("/"):
        raise ValidationError("The path must be absolute (start with '/').")
    if len(value) > MAX_PATH_LENGTH:
        raise ValidationError(f"The path is longer than {MAX_PATH_LENGTH} characters.")
    if has_parent_reference(value):
        raise ValidationError("The path must not contain '..' components.")
    return value


def clean_absolute_path(value: Any, *, allow_root: bool = False, resolve_dots: bool = False) -> str:
    """``value`` as a normalised absolute path: ``//`` collapsed, no trailing ``/``.

    ``.`` components are refused, or dropped with ``resolve_dots`` (they never climb, so a
    resource that promises to normalise what it is given may resolve them); ``..`` always is
    refused. ``/`` itself is refused unless ``allow_root``.
    """
    parts = [part for part in _path_text(value, absolute=True).split("/") if part]
    if resolve_dots:
        parts = [part for part in parts if part != "."]
    elif "." in parts:
        raise ValidationError("The path must not contain '.' components.")
    if not parts and not allow_root:
        raise ValidationError("The path cannot be the root directory '/'.")
    return "/" + "/".join(parts)


def absolute_path_problem(value: Any) -> str | None:
    """Why ``value`` is not an absolute path other than ``/`` already in normal form (None: it is).

    The strict form of ``clean_absolute_path``, for fields stored exactly as given."""
    try:
        normal = clean_absolute_path(value, resolve_dots=True)
    except ValidationError as exc:
        return " ".join(exc.messages)
    if normal != value:
        return f"The path must be normalised (no '//', '.' or trailing '/'): use '{normal}'."
    return None


def validate_absolute_path(value: str) -> None:
    """An optional path in normal form (see ``absolute_path_problem``); empty means none."""
    if value:
        message = absolute_path_problem(value)
        if message:
            raise ValidationError(message)


def clean_relative_or_absolute_path(value: Any) -> str:
    """A path on a data store: an object-key prefix (``archive/2024``) or a folder (``/exports/a``).
    Redundant separators and ``.`` are removed, ``..`` is refused; a leading ``/`` is kept (so
    ``/`` stays ``/``, and ``.`` becomes ``""``)."""
    parts = [part for part in _path_text(value, absolute=False).split("/") if part not in ("", ".")]
    return ("/" if value.startswith("/") else "") + "/".join(parts)


def is_inside(path: str, root: str) -> bool:
    """Whether normalised ``path`` is ``root`` or below it (``/a/bc`` is not inside ``/a/b``)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def ancestors(path: str) -> list[str]:
    """The proper ancestors of a normalised path, shortest first, without ``/``."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:index]) for index in range(1, len(parts))]


# --- hosts -----------------------------------------------------------------------------------------

HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_LABEL = re.compile(HOST_LABEL)


def is_host_name(value: str) -> bool:
    """A DNS host name: dot-separated labels of letters, digits and inner hyphens (up to 63
    characters each, 253 in all). A trailing dot is not accepted."""
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in value.split("."))


def _is_ip_address(value: str) -> bool:
    """An IPv4 or IPv6 address, the IPv6 one bare or in brackets; no zone (``%eth0``)."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value[1:-1] if value.startswith("[") and value.endswith("]") else value)
    except ValueError:
        return False
    return True


def validate_host(value: str) -> None:
    """A host name or IP address, nothing more: the port and protocol have their own fields."""
    if not value:
        return
    if "://" in value:
        raise ValidationError(
            "Give the host name only, without 'http://' or 'https://': the protocol goes in 'scheme'."
        )
    if any(char in value for char in "/?#@ ") or CONTROL_CHARACTERS.search(value):
        raise ValidationError("Give the host name only, without a path, user or spaces.")
    if _is_ip_address(value):
        return
    if "%" in value:
        raise ValidationError("An IPv6 zone ('%...') is not supported: give the address alone.")
    if ":" in value:
        raise ValidationError("Give the host name only: the port goes in 'port'.")
    if not is_host_name(value):
        raise ValidationError(
            "Not a valid host name (letters, digits and hyphens in dot-separated labels of up to 63 characters)."
        )


# Endpoints written as one string (data stores): a host part is a name, an IPv4 address, or an
# IPv6 address in brackets (a bare one would be ambiguous with the port).
_HOST_PART = r"\[[^\]/\s]+\]|[^:/\s\[\]]+"
_URL_ENDPOINT = re.compile(rf"^(?:https?://)?(?P<host>{_HOST_PART})(?::(?P<port>\d{{1,5}}))?/?$")
_NFS_ENDPOINT = re.compile(rf"^(?P<host>{_HOST_PART})(?::/\S*)?$")
_SMB_ENDPOINT = re.compile(rf"^(?://(?P<unc>{_HOST_PART})(?:/[^\s/]+)?/?|(?P<host>{_HOST_PART}))$")


def _endpoint_host(value: str, pattern: re.Pattern[str], usage: str) -> re.Match[str]:
    match = pattern.fullmatch(value)
    if match is None:
        raise ValidationError(f"Use {usage}.")
    host = match.groupdict().get("unc") or match.group("host")
    if problem(validate_host, host):
        raise ValidationError(f"Use {usage}: '{host[:80]}' is not a host name or IP address.")
    return match


def validate_url_endpoint(value: str) -> None:
    """``host[:port]`` or ``http(s)://host[:port]`` (an object store's endpoint in one string)."""
    match = _endpoint_host(value, _URL_ENDPOINT, "'host[:port]' or 'http(s)://host[:port]'")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise ValidationError("The port must be between 1 and 65535.")


def validate_nfs_endpoint(value: str) -> None:
    """An NFS server: ``host`` or ``host:/export/path``."""
    _endpoint_host(value, _NFS_ENDPOINT, "'host' or 'host:/export/path'")


def validate_smb_endpoint(value: str) -> None:
    """An SMB server: ``host``, ``//host`` or ``//host/share``."""
    _endpoint_host(value, _SMB_ENDPOINT, "'host' or '//host/share'")


# --- storage names ---------------------------------------------------------------------------------

_ASCII_ALNUM = re.compile(r"[a-z0-9]")
# Digits in four dot-separated groups: what the providers mean by "formatted as an IP address".
_IPV4_LIKE = re.compile(r"\d+(?:\.\d+){3}")
_REGION = re.compile(r"[A-Za-z0-9_-]{0,64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _starts_and_ends_alnum(value: str) -> bool:
    return bool(_ASCII_ALNUM.fullmatch(value[0]) and _ASCII_ALNUM.fullmatch(value[-1]))


def validate_s3_bucket_name(value: str) -> None:
    """Amazon's naming rules for general purpose buckets (S3-compatible stores follow them)."""
    if not 3 <= len(value) <= 63:
        raise ValidationError("An S3 bucket name has 3 to 63 characters.")
    if not re.fullmatch(r"[a-z0-9.-]+", value):
        raise ValidationError("Use only lowercase letters, digits, dots and hyphens.")
    if not _starts_and_ends_alnum(value):
        raise ValidationError("Must begin and end with a lowercase letter or a digit.")
    if ".." in value or ".-" in value or "-." in value:
        raise ValidationError("Dots must separate labels: no '..', '.-' or '-.'.")
    if _IPV4_LIKE.fullmatch(value):
        raise ValidationError("Must not be formatted as an IP address.")
    if value.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        raise ValidationError("Must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-).")
    if value.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        raise ValidationError("Must not end with a reserved suffix (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3).")


def validate_gcs_bucket_name(value: str) -> None:
    """Google Cloud Storage's bucket naming rules."""
    if not re.fullmatch(r"[a-z0-9._-]+", value):
        raise ValidationError("Use only lowercase letters, digits, dashes, underscores and dots.")
    if len(value) < 3:
        raise ValidationError("A GCS bucket name has at least 3 characters.")
    if "." in value:
        if len(value) > 222 or any(not 1 <= len(part) <= 63 for part in value.split(".")):
            raise ValidationError(
                "A dotted GCS bucket name has at most 222 characters, each dot-separated part 1 to 63."
            )
    elif len(value) > 63:
        raise ValidationError("A GCS bucket name without dots has at most 63 characters.")
    if not _starts_and_ends_alnum(value):
        raise ValidationError("Must begin and end with a lowercase letter or a digit.")
    if _IPV4_LIKE.fullmatch(value):
        raise ValidationError("Must not be formatted as an IP address.")
    if value.startswith("goog") or re.search(r"g[o0]{2}g[l1]e", value):
        raise ValidationError("Must not start with 'goog' or contain 'google' (or a look-alike).")


def validate_region(value: str) -> None:
    if not _REGION.fullmatch(value):
        raise ValidationError("Use at most 64 letters, digits, '-' and '_' (e.g. 'eu-west-2').")


def validate_storage_account(value: str) -> None:
    if not re.fullmatch(r"[a-z0-9]{3,24}", value):
        raise ValidationError("An Azure storage account name has 3 to 24 lowercase letters and digits.")


def validate_container(value: str) -> None:
    if not 3 <= len(value) <= 63:
        raise ValidationError("An Azure container name has 3 to 63 characters.")
    if not re.fullmatch(r"[a-z0-9-]+", value):
        raise ValidationError("Use only lowercase letters, digits and hyphens.")
    if not _starts_and_ends_alnum(value) or "--" in value:
        raise ValidationError(
            "Must begin and end with a letter or digit, and every hyphen must sit between letters or digits."
        )


# --- secrets (no message quotes the value) ---------------------------------------------------------

def validate_azure_key(value: str) -> None:
    """An account key is base64 (88 characters for the usual 64 bytes)."""
    message = "Must be the storage account's base64-encoded access key."
    if len(value) < 16 or len(value) % 4 or not _BASE64.fullmatch(value):
        raise ValidationError(message)
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(message) from None


def validate_secret(value: str) -> None:
    """A credential as submitted: printable, no white space, not in the encrypted storage format."""
    if value.startswith(PREFIX):
        # The storage format of encrypted values (hub.secrets): never a real credential.
        raise ValidationError(f"Must not start with '{PREFIX}'.")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ValidationError("Must not contain spaces, line breaks or control characters.")
