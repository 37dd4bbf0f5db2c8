"""Validation rules for NFS / SMB shares (pure Python, no database).

Agents write what the hub sends them into ``/etc/exports`` and ``smb.conf`` on every node of a
site, and the product we replace applied user-supplied options verbatim: one bad option could
stop ``exportfs`` or ``smbd`` on a whole site, and a newline in any value could inject arbitrary
configuration. So every value is checked here against an explicit allow-list and a syntax, and
anything else is refused with a message naming it. Each function raises
``django.core.exceptions.ValidationError`` (DRF turns it into a 400 with field errors). Paths,
and the rules shares have in common with other resources (control characters, host names), are
in ``sites.validators``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError

from sites.validators import CONTROL_CHARACTERS, HOST_LABEL, is_host_name

# --- host specifications ---------------------------------------------------------------------------

# A wildcard label: letters, digits, '-' and the exportfs/smbd wildcards '*' and '?'.
_WILD_LABEL = re.compile(r"^[A-Za-z0-9*?-]{1,63}$")
_NETGROUP = re.compile(r"^@[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_IPV4_PREFIX = re.compile(r"^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){1,3}$")


def _is_wildcard_hostname(value: str) -> bool:
    """``*.example.org``, ``node??.example.org``: wildcards allowed except in the last label."""
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not any(ch in value for ch in "*?"):
        return False
    if not all(_WILD_LABEL.match(label) for label in labels):
        return False
    return bool(re.fullmatch(HOST_LABEL, labels[-1]))


def _is_address_or_network(value: str) -> bool:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


HOST_SPEC_HELP = (
    "an IPv4/IPv6 address, a network (10.0.0.0/24 or 10.0.0.0/255.255.255.0), a host name, "
    "a wildcard name such as *.example.org, a netgroup such as @admins, or '*'"
)


def validate_nfs_host(value: Any) -> str:
    """One NFS client specification, as ``exports(5)`` understands it."""
    if not isinstance(value, str):
        raise ValidationError("Give the hosts as a string.")
    value = value.strip()
    if not value or len(value) > 255 or CONTROL_CHARACTERS.search(value) or any(ch in value for ch in " ,()\"'"):
        raise ValidationError(f"'{value[:80]}' is not a client specification: give {HOST_SPEC_HELP}.")
    if (
        value == "*"
        or _NETGROUP.match(value)
        or _is_address_or_network(value)
        or is_host_name(value)
        or _is_wildcard_hostname(value)
    ):
        return value
    raise ValidationError(f"'{value[:80]}' is not a client specification: give {HOST_SPEC_HELP}.")


SMB_HOST_HELP = (
    "an IPv4/IPv6 address, a network (10.0.0.0/24 or 10.0.0.0/255.255.255.0), an address "
    "prefix such as 10.1., a host name, a domain suffix such as .example.org, a wildcard name "
    "such as *.example.org, a netgroup such as @admins, or ALL"
)


def validate_smb_host(value: Any) -> str:
    """One entry of smb.conf's ``hosts allow`` / ``hosts deny`` (``EXCEPT`` is not supported)."""
    if not isinstance(value, str):
        raise ValidationError("Give each host as a string.")
    value = value.strip()
    bad = f"'{value[:80]}' is not a host entry: give {SMB_HOST_HELP}."
    if not value or len(value) > 255 or CONTROL_CHARACTERS.search(value) or any(ch in value for ch in " ,()\"'"):
        raise ValidationError(bad)
    if value.upper() == "ALL":
        return "ALL"
    if value.upper() == "EXCEPT":
        raise ValidationError("EXCEPT is not supported: list the hosts to deny in hosts_deny instead.")
    if (
        _NETGROUP.match(value)
        or _IPV4_PREFIX.match(value)
        or _is_address_or_network(value)
        or is_host_name(value)
        or (value.startswith(".") and is_host_name(value[1:]))
        or _is_wildcard_hostname(value)
    ):
        return value
    raise ValidationError(bad)


def validate_list(values: Any, item: Callable[[Any], str], *, what: str, max_items: int = 256) -> list[str]:
    """A list of strings each checked by ``item``; duplicates dropped, order kept."""
    if not isinstance(values, list):
        raise ValidationError(f"Give a list of {what}.")
    if len(values) > max_items:
        raise ValidationError(f"Give at most {max_items} {what}.")
    clean: list[str] = []
    errors: list[str] = []
    for value in values:
        try:
            checked = item(value)
        except ValidationError as exc:
            errors.extend(exc.messages)
            continue
        if checked not in clean:
            clean.append(checked)
    if errors:
        raise ValidationError(errors)
    return clean


# --- SMB users, names and modes --------------------------------------------------------------------

_SMB_USER = re.compile(r"^[@+&]?[\w.$-]+(?: [\w.$-]+)*(?:\\[\w.$-]+(?: [\w.$-]+)*)?$")


def validate_smb_user(value: Any) -> str:
    """A user or group as smb.conf names them: ``alice``, ``@staff``, ``DOMAIN\\Domain Users``."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Give each user or group as a non-empty string.")
    value = value.strip()
    if len(value) > 256 or not _SMB_USER.match(value):
        raise ValidationError(
            f"'{value[:80]}' is not a user or group name (letters, digits, '.', '_', '-', '$', inner spaces, "
            "an optional DOMAIN\\ prefix and an optional leading '@' for a group)."
        )
    return value


_SMB_NAME_FORBIDDEN = set('\\/[]:|<>+=;,*?"')
RESERVED_SMB_NAMES = frozenset({"global", "homes", "printers", "ipc$", "print$"})


def validate_smb_share_name(value: Any) -> str:
    """A share name Windows clients and smbd both accept, and not one of smb.conf's sections."""
    if not isinstance(value, str):
        raise ValidationError("Give the share name as a string.")
    if not 1 <= len(value) <= 80:
        raise ValidationError("A share name has 1 to 80 characters.")
    if value != value.strip():
        raise ValidationError("A share name cannot start or end with a space.")
    bad = sorted({ch for ch in value if ch in _SMB_NAME_FORBIDDEN or CONTROL_CHARACTERS.match(ch)})
    if bad:
        shown = " ".join(repr(ch)[1:-1] for ch in bad)
        raise ValidationError(f"A share name cannot contain: {shown}.")
    if value.lower() in RESERVED_SMB_NAMES:
        raise ValidationError(f"'{value}' is reserved by Samba; choose another name.")
    return value


_OCTAL_MODE = re.compile(r"^[0-7]{3,4}$")


def validate_octal_mode(value: Any) -> str:
    """A permission mode as 3 or 4 octal digits (``755``, ``0755``), returned with 4 digits."""
    if not isinstance(value, str) or not _OCTAL_MODE.match(value):
        raise ValidationError("Give the mode as 3 or 4 octal digits, e.g. '0755'.")
    return value.zfill(4)


# --- option allow-lists ------------------------------------------------------------------------------

def _bool_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.strip().lower() in ("yes", "true", "1", "on"):
        return "yes"
    if isinstance(value, str) and value.strip().lower() in ("no", "false", "0", "off"):
        return "no"
    raise ValidationError("expects yes or no")


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, bool):
            value = "yes" if value else "no"
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise ValidationError("expects one of " + ", ".join(choices))

    return check


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool):
            raise ValidationError(f"expects a whole number from {low} to {high}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValidationError(f"expects a whole number from {low} to {high}") from None
        if not low <= number <= high or (isinstance(value, float) and number != value):
            raise ValidationError(f"expects a whole number from {low} to {high}")
        return number

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("expects a string")
    value = value.strip()
    if CONTROL_CHARACTERS.search(value):
        raise ValidationError("must not contain control characters (newline, tab, NUL...)")
    if len(value) > 1024:
        raise ValidationError("is longer than 1024 characters")
    return value


def _users(value: Any) -> str:
    text = _text(value)
    if text:
        for name in text.replace(",", " ").split():
            validate_smb_user(name)
    return text


# smb.conf share parameters that cannot break smbd, each with its value check. Excluded on
# purpose: anything that runs programs (preexec, root postexec, magic script...), loads code
# (vfs objects), widens access beyond the share (wide links; "follow symlinks" is kept because
# without wide links smbd confines it to the share), changes identity (force user, force group),
# includes other files, or duplicates a dedicated field of the share.
SAFE_SMB_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "comment": _text,
    "veto files": _text,
    "hide files": _text,
    "delete veto files": _bool_value,
    "hide dot files": _bool_value,
    "hide special files": _bool_value,
    "hide unreadable": _bool_value,
    "hide unwriteable files": _bool_value,
    "access based share enum": _bool_value,
    "oplocks": _bool_value,
    "level2 oplocks": _bool_value,
    "strict locking": _choice("yes", "no", "auto"),
    "strict allocate": _bool_value,
    "strict sync": _bool_value,
    "sync always": _bool_value,
    "inherit permissions": _bool_value,
    "inherit acls": _bool_value,
    "inherit owner": _choice("no", "yes", "windows and unix", "unix only"),
    "nt acl support": _bool_value,
    "acl allow execute always": _bool_value,
    "map archive": _bool_value,
    "map hidden": _bool_value,
    "map system": _bool_value,
    "map readonly": _choice("yes", "no", "permissions"),
    "store dos attributes": _bool_value,
    "ea support": _bool_value,
    "dos filemode": _bool_value,
    "dos filetimes": _bool_value,
    "case sensitive": _choice("yes", "no", "auto"),
    "preserve case": _bool_value,
    "short preserve case": _bool_value,
    "default case": _choice("lower", "upper"),
    "mangled names": _choice("yes", "no", "illegal"),
    "follow symlinks": _bool_value,
    "csc policy": _choice("manual", "documents", "programs", "disable"),
    "smb encrypt": _choice("default", "off", "if_required", "desired", "required", "auto", "mandatory",
                           "disabled", "enabled"),
    "max connections": _integer(0, 65535),
    "read list": _users,
    "write list": _users,
    "invalid users": _users,
}

# Parameters that have their own field on the share: setting them twice would be ambiguous.
SMB_FIELD_OPTIONS: dict[str, str] = {
    "path": "path",
    "read only": "read_only",
    "writeable": "read_only",
    "writable": "read_only",
    "write ok": "read_only",
    "browseable": "visible",
    "browsable": "visible",
    "guest ok": "guest_ok",
    "public": "guest_ok",
    "hosts allow": "hosts_allow",
    "allow hosts": "hosts_allow",
    "hosts deny": "hosts_deny",
    "deny hosts": "hosts_deny",
    "admin users": "admin_users",
    "valid users": "allowed_users",
    "create mask": "create_mask",
    "create mode": "create_mask",
    "directory mask": "directory_mask",
    "directory mode": "directory_mask",
    "force create mode": "force_create_mode",
    "force directory mode": "force_directory_mode",
}

_SMB_BY_SQUEEZED = {name.replace(" ", ""): name for name in [*SAFE_SMB_OPTIONS, *SMB_FIELD_OPTIONS]}


def _canonical_smb_option(key: str) -> str | None:
    """smbd ignores case and spaces in parameter names (``hidedotfiles`` = ``hide dot files``)."""
    return _SMB_BY_SQUEEZED.get("".join(key.lower().split()))


def validate_smb_options(options: Any) -> dict[str, Any]:
    """``advanced_settings`` of an SMB share: safe parameters only, values checked, names canonical."""
    if not isinstance(options, Mapping):
        raise ValidationError("Give the advanced settings as an object of smb.conf parameter: value.")
    clean: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in options.items():
        if not isinstance(key, str) or CONTROL_CHARACTERS.search(key) or len(key) > 100:
            errors.append(f"'{str(key)[:40]!s}' is not an smb.conf parameter name.")
            continue
        name = _canonical_smb_option(key)
        if name in SMB_FIELD_OPTIONS:
            errors.append(f"'{key}': set it with the share's '{SMB_FIELD_OPTIONS[name]}' field instead.")
            continue
        if name is None:
            errors.append(
                f"'{key}' is not in the list of safe SMB options the hub accepts (options are applied on "
                f"every node of the site, and an unsafe one can stop smbd): {', '.join(sorted(SAFE_SMB_OPTIONS))}."
            )
            continue
        if name in clean:
            errors.append(f"'{key}' is given twice.")
            continue
        try:
            clean[name] = SAFE_SMB_OPTIONS[name](value)
        except ValidationError as exc:
            errors.append(f"'{key}' " + "; ".join(exc.messages) + ".")
    if errors:
        raise ValidationError(errors)
    return clean


def _sec_flavours(value: Any) -> str:
    allowed = ("sys", "krb5", "krb5i", "krb5p")
    if not isinstance(value, str) or not value:
        raise ValidationError("expects security flavours separated by ':' (sys, krb5, krb5i, krb5p)")
    flavours = value.split(":")
    if any(flavour not in allowed for flavour in flavours) or len(set(flavours)) != len(flavours):
        raise ValidationError("expects security flavours separated by ':' (sys, krb5, krb5i, krb5p)")
    return value


def _xprtsec(value: Any) -> str:
    allowed = ("none", "tls", "mtls")
    if not isinstance(value, str) or not value or any(part not in allowed for part in value.split(":")):
        raise ValidationError("expects transport security policies separated by ':' (none, tls, mtls)")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("is a flag: give true to set it or false to leave it out")
    return value


# exports(5) options that cannot break exportfs or widen access beyond the export, with their
# value checks. Flags take true/false. Options with a dedicated client field are refused below.
SAFE_NFS_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "sec": _sec_flavours,
    "xprtsec": _xprtsec,
    "crossmnt": _flag,
    "nohide": _flag,
    "pnfs": _flag,
    "no_pnfs": _flag,
    "security_label": _flag,
    "secure_locks": _flag,
    "insecure_locks": _flag,
    "auth_nlm": _flag,
    "no_auth_nlm": _flag,
}
_NFS_EXCLUSIVE = (("pnfs", "no_pnfs"), ("secure_locks", "insecure_locks"), ("auth_nlm", "no_auth_nlm"),
                  ("secure_locks", "no_auth_nlm"), ("insecure_locks", "auth_nlm"))

NFS_FIELD_OPTIONS: dict[str, str] = {
    "rw": "read_only", "ro": "read_only",
    "sync": "asynchronous", "async": "asynchronous",
    "wdelay": "write_delay", "no_wdelay": "write_delay",
    "secure": "insecure_ports", "insecure": "insecure_ports",
    "root_squash": "force_root_user_id", "no_root_squash": "force_root_user_id",
    "all_squash": "force_all_user_id", "no_all_squash": "force_all_user_id",
    "anonuid": "anonymous_user_id", "anongid": "anonymous_group_id",
    "subtree_check": "subtree_check", "no_subtree_check": "subtree_check",
    "fsid": "the share's fsid",
}


def validate_nfs_options(options: Any) -> dict[str, Any]:
    """``advanced_settings`` of an NFS client: safe export options only, values checked."""
    if not isinstance(options, Mapping):
        raise ValidationError("Give the advanced settings as an object of export option: value.")
    clean: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in options.items():
        if not isinstance(key, str) or CONTROL_CHARACTERS.search(key) or len(key) > 100:
            errors.append(f"'{str(key)[:40]}' is not an export option.")
            continue
        if key in NFS_FIELD_OPTIONS:
            errors.append(f"'{key}': set it with the client's '{NFS_FIELD_OPTIONS[key]}' field instead.")
            continue
        if key not in SAFE_NFS_OPTIONS:
            errors.append(
                f"'{key}' is not in the list of safe NFS export options the hub accepts (an unsafe option "
                f"can stop exportfs on the site): {', '.join(sorted(SAFE_NFS_OPTIONS))}."
            )
            continue
        try:
            clean[key] = SAFE_NFS_OPTIONS[key](value)
        except ValidationError as exc:
            errors.append(f"'{key}' " + "; ".join(exc.messages) + ".")
    for first, second in _NFS_EXCLUSIVE:
        if clean.get(first) is True and clean.get(second) is True:
            errors.append(f"'{first}' and '{second}' contradict each other; set one of them.")
    if errors:
        raise ValidationError(errors)
    return clean


def nfs_export_options(client: Any) -> str:
    """The exports(5) option string of an ``NfsClient`` (what the agent writes after the host)."""
    options = [
        "ro" if client.read_only else "rw",
        "async" if client.asynchronous else "sync",
        "wdelay" if client.write_delay else "no_wdelay",
        "insecure" if client.insecure_ports else "secure",
        "root_squash" if client.force_root_user_id else "no_root_squash",
        "all_squash" if client.force_all_user_id else "no_all_squash",
        "subtree_check" if client.subtree_check else "no_subtree_check",
    ]
    if client.anonymous_user_id is not None:
        options.append(f"anonuid={client.anonymous_user_id}")
    if client.anonymous_group_id is not None:
        options.append(f"anongid={client.anonymous_group_id}")
    for key, value in sorted((client.advanced_settings or {}).items()):
        if value is True:
            options.append(key)
        elif value is not False and value is not None:
            options.append(f"{key}={value}")
    return ",".join(options)


def duplicates(values: Iterable[str]) -> list[str]:
    """The values that occur more than once, in first-seen order."""
    seen: set[str] = set()
    repeated: list[str] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated
