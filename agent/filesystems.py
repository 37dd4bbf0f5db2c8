"""Which filesystem driver this node runs: the POSIX driver, or the GPFS (IBM Storage Scale,
PixStor) driver that adds what only the mm commands tell (pools, filesets and quotas in the
inventory report).

``filesystem = "auto"`` (the default) picks GPFS when a space root lies on a mount of type
``gpfs`` and the mm commands are installed (``mmlsfs`` in ``gpfs_bin_dir``), else POSIX: a GPFS
node needs no setting, and a node without the commands never tries them. ``posix`` or ``gpfs``
forces the choice (``gpfs`` on a node without the commands makes the inventory fail, with the
commands' error, rather than report a POSIX view of a GPFS site).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from agent.config import FILESYSTEMS, AgentConfig
from agent.drivers.gpfs import GpfsFilesystem
from agent.drivers.gpfs_commands import DEFAULT_BIN_DIR
from agent.drivers.posix import PosixFilesystem
from agent.inventory import Mount, mount_of, read_mounts

GPFS_FSTYPE = "gpfs"

__all__ = ["FILESYSTEMS", "configured_kind", "driver_kind", "open_filesystem"]


def driver_kind(configured: str, roots: Sequence[str | os.PathLike[str]], *,
                bin_dir: str | os.PathLike[str] = DEFAULT_BIN_DIR, mounts: Sequence[Mount] | None = None) -> str:
    """``posix`` or ``gpfs``: ``configured`` unless it is ``auto`` (see the module docstring)."""
    if configured not in FILESYSTEMS:
        raise ValueError(f"filesystem must be one of {', '.join(FILESYSTEMS)}, not {configured!r}")
    if configured != "auto":
        return configured
    if not roots or not os.access(Path(bin_dir) / "mmlsfs", os.X_OK):
        return "posix"
    mounts = read_mounts() if mounts is None else mounts
    on_gpfs = any((mount := mount_of(os.fspath(root), mounts)) is not None and mount.fstype == GPFS_FSTYPE
                  for root in roots)
    return "gpfs" if on_gpfs else "posix"


def configured_kind(config: AgentConfig) -> str:
    """``driver_kind`` for the agent's configuration (``filesystem``, ``roots``, ``gpfs_bin_dir``)."""
    return driver_kind(config.filesystem, config.roots, bin_dir=config.gpfs_bin_dir)


def open_filesystem(kind: str, roots: Sequence[str | os.PathLike[str]], *,
                    bin_dir: str | os.PathLike[str] = DEFAULT_BIN_DIR) -> PosixFilesystem:
    """The driver of ``kind`` (from ``driver_kind``) over ``roots``, with the default options."""
    if kind == "gpfs":
        return GpfsFilesystem(roots, bin_dir=bin_dir)
    if kind == "posix":
        return PosixFilesystem(roots)
    raise ValueError(f"no filesystem driver {kind!r}")
