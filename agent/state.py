"""The agent's local state directory: what the hub told this agent, kept across restarts.

The agent has no database; its memory is a directory (``state_dir``, mode 0700) of small files:

``settings.json``              the last settings pushed by the hub (``agent.apply_settings``)
``spaces/<id>.json``           spaces whose directory this agent created (for usage reports)
``shares/<space uuid>.json``   the share set of each space (``agent.apply_shares``)
``targets/<id>.target``        external targets: target, bucket and credentials, **encrypted**
                               with the agent key (Fernet), mode 0600
``journal/<id>.json``          the outcome of each state-changing order already applied, so a
                               redelivered order is answered again instead of applied again
``cancel/<id>.json``           a request to stop the data tasks of a task or job id

Every write is atomic: a temporary file in the same directory is written, fsynced and renamed
over the old one, then the directory is fsynced. A crash leaves the old file or the new one,
never a torn one, and concurrent readers (several worker processes) never see a partial file.
Records are one file each, so two orders running at once never read-modify-write a shared file.

File names of records keyed by free text (endpoint names, mountpoints) are a hash of the key, so
no name a hub sends can escape the directory or collide with another record's file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.drivers.base import ObjectStore, PermanentError

DIR_MODE = 0o700
FILE_MODE = 0o600
JOURNAL_TTL = 7 * 24 * 3600  # long past any broker redelivery (the visibility timeout is hours)
_UUID_NAME = frozenset("0123456789abcdef-")


class StateError(Exception):
    """A state record that cannot be used (missing agent key, undecryptable or corrupt record)."""


class TargetNotConfigured(PermanentError):
    """No target of that endpoint name was configured on this agent (``agent.configure_target``)."""


def _record_name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def atomic_write(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see the module docstring)."""
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)  # O_CREAT's mode is masked by the umask
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8")


class StateDir:
    """The state directory of one agent (one site on one node). Safe to share between processes."""

    def __init__(self, root: str | os.PathLike[str], *, agent_key: str | None = None) -> None:
        self.root = Path(root)
        self._agent_key = agent_key

    def ensure(self) -> StateDir:
        """Create the directory tree (mode 0700: it holds encrypted credentials and share sets)."""
        for sub in ("", "spaces", "shares", "targets", "journal", "cancel"):
            path = self.root / sub
            path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.root, DIR_MODE)
        return self

    # --- plain JSON records -----------------------------------------------------------------------
    def write_json(self, relative: str, value: Any) -> Path:
        path = self.root / relative
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        atomic_write(path, _dumps(value))
        return path

    def read_json(self, relative: str, default: Any = None) -> Any:
        try:
            return json.loads((self.root / relative).read_bytes())
        except FileNotFoundError:
            return default
        except ValueError as exc:
            raise StateError(f"state file {relative} is corrupt: {exc}") from None

    def remove(self, relative: str) -> bool:
        try:
            (self.root / relative).unlink()
        except FileNotFoundError:
            return False
        return True

    # --- settings ---------------------------------------------------------------------------------
    def save_settings(self, record: dict[str, Any]) -> None:
        self.write_json("settings.json", record)

    def settings(self) -> dict[str, Any]:
        """The last settings record (``{"site", "settings", "task_id", "applied_at"}``) or ``{}``."""
        value = self.read_json("settings.json", {})
        return value if isinstance(value, dict) else {}

    def settings_mtime(self) -> float | None:
        try:
            return (self.root / "settings.json").stat().st_mtime
        except FileNotFoundError:
            return None

    # --- spaces and shares ------------------------------------------------------------------------
    def save_space(self, mountpoint: str, record: dict[str, Any]) -> None:
        self.write_json(f"spaces/{_record_name(mountpoint)}.json", record)

    def spaces(self) -> list[dict[str, Any]]:
        return [record for record in self._records("spaces", ".json") if isinstance(record, dict)]

    def save_shares(self, space_uuid: str, record: dict[str, Any]) -> None:
        self.write_json(f"shares/{self._uuid(space_uuid)}.json", record)

    def remove_shares(self, space_uuid: str) -> bool:
        return self.remove(f"shares/{self._uuid(space_uuid)}.json")

    def shares(self, space_uuid: str) -> dict[str, Any] | None:
        return self.read_json(f"shares/{self._uuid(space_uuid)}.json")

    @staticmethod
    def _uuid(value: str) -> str:
        text = str(value).lower()
        if not text or len(text) > 64 or not set(text) <= _UUID_NAME:
            raise StateError(f"{value!r} is not a space uuid")
        return text

    def _records(self, sub: str, suffix: str) -> Iterator[Any]:
        directory = self.root / sub
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            if path.name.endswith(suffix) and not path.name.startswith("."):
                try:
                    yield json.loads(path.read_bytes())
                except (OSError, ValueError):
                    continue  # a record removed meanwhile, or foreign junk: not ours to judge

    # --- targets (encrypted) ----------------------------------------------------------------------
    def _fernet(self) -> Any:
        if not self._agent_key:
            raise StateError(
                "no agent key is configured (agent_key / AGENT_KEY or agent_key_file); install the site's key "
                "printed by `manage.py agent_key <site>` on the hub"
            )
        from cryptography.fernet import Fernet

        return Fernet(self._agent_key.encode("ascii"))

    def decrypt_order_secret(self, token: str) -> Any:
        """The JSON value sealed by the hub in an order (``TargetOrder.credentials``)."""
        from cryptography.fernet import InvalidToken

        try:
            plain = self._fernet().decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError, TypeError):
            raise StateError(
                "the credentials in the order cannot be decrypted with this agent's key: install the site's "
                "current key (`manage.py agent_key <site>` on the hub)"
            ) from None
        try:
            return json.loads(plain)
        except ValueError:
            raise StateError("the decrypted credentials are not JSON") from None

    def _target_path(self, endpoint_name: str) -> Path:
        return self.root / "targets" / f"{_record_name(endpoint_name)}.target"

    def save_target(self, endpoint_name: str, record: dict[str, Any]) -> None:
        """Store a target record (target, bucket, credentials) encrypted with the agent key."""
        token = self._fernet().encrypt(_dumps({"endpoint_name": endpoint_name, **record}))
        path = self._target_path(endpoint_name)
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        atomic_write(path, token, mode=FILE_MODE)

    def load_target(self, endpoint_name: str) -> dict[str, Any] | None:
        """The decrypted record of a target, or None when it is not configured here."""
        from cryptography.fernet import InvalidToken

        try:
            token = self._target_path(endpoint_name).read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(self._fernet().decrypt(token))
        except InvalidToken:
            raise StateError(
                f"the record of target {endpoint_name!r} cannot be decrypted with the configured agent key "
                "(the key changed?): configure the target again from the hub"
            ) from None
        if not isinstance(record, dict) or record.get("endpoint_name") != endpoint_name:
            raise StateError(f"the record of target {endpoint_name!r} is corrupt")
        return record

    def remove_target(self, endpoint_name: str) -> bool:
        try:
            self._target_path(endpoint_name).unlink()
        except FileNotFoundError:
            return False
        return True

    def target_names(self) -> list[str]:
        """Endpoint names of every configured target (decrypts each record)."""
        names = []
        directory = self.root / "targets"
        for path in sorted(directory.glob("*.target")) if directory.is_dir() else []:
            try:
                record = json.loads(self._fernet().decrypt(path.read_bytes()))
            except Exception:  # noqa: BLE001 - an unreadable record is skipped, open_target reports it
                continue
            names.append(str(record.get("endpoint_name")))
        return names

    def open_target(self, endpoint_name: str) -> ObjectStore:
        """The object store of a configured target, built from its bucket and credentials.

        The data tasks call this with the endpoint name the hub gives them. Raises
        ``TargetNotConfigured`` (a ``PermanentError``) for an unknown name, ``StateError`` for a
        record this agent cannot read, and whatever the driver's ``from_bucket`` raises.
        """
        from agent.drivers.registry import open_store

        record = self.load_target(endpoint_name)
        if record is None:
            raise TargetNotConfigured(
                f"target {endpoint_name!r} is not configured on this agent (no agent.configure_target received)"
            )
        bucket = dict(record.get("bucket") or {})
        bucket.update(record.get("credentials") or {})
        return open_store(bucket)

    # --- journal of applied orders ---------------------------------------------------------------
    def _journal_path(self, task_id: str) -> Path:
        return self.root / "journal" / f"{_record_name(task_id)}.json"

    def journal_get(self, task_id: str) -> dict[str, Any] | None:
        """The outcome recorded for ``task_id`` (``{"task", "state", "results"|"error", "at"}``)."""
        try:
            value = json.loads(self._journal_path(task_id).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) and value.get("task_id") == task_id else None

    def journal_put(self, task_id: str, outcome: dict[str, Any]) -> None:
        path = self._journal_path(task_id)
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        atomic_write(path, _dumps({**outcome, "task_id": task_id}))

    def prune(self, *, older_than: float = JOURNAL_TTL, now: float | None = None) -> int:
        """Forget journal entries and cancel flags older than ``older_than`` seconds (run at start);
        returns how many went."""
        now = time.time() if now is None else now
        removed = 0
        for sub in ("journal", "cancel"):
            directory = self.root / sub
            for path in directory.glob("*.json") if directory.is_dir() else []:
                try:
                    if now - path.stat().st_mtime > older_than:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    # --- cancel flags for data tasks -------------------------------------------------------------
    def request_cancel(self, task_or_job_id: str) -> None:
        """Ask running data tasks of ``task_or_job_id`` to stop between files (``should_cancel``)."""
        self.write_json(f"cancel/{_record_name(str(task_or_job_id))}.json", {"id": str(task_or_job_id),
                                                                            "at": time.time()})

    def cancel_requested(self, ids: list[str]) -> bool:
        return any((self.root / "cancel" / f"{_record_name(str(i))}.json").exists() for i in ids)
