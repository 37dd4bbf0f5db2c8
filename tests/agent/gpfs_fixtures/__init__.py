"""Recorded Storage Scale command output and fake ``mm*`` executables for the GPFS driver tests.

The ``*.txt`` files are ``-Y`` output in IBM's documented format (field names as the commands
print them in Storage Scale 5.1), for a two-filesystem cluster:

* ``gpfs1`` mounted at ``/gpfs/gpfs1``: pools ``system`` (metadata only, 2 TiB) and ``data``
  (200 TiB); filesets ``root``, ``projects`` (hard and soft quotas), ``users`` (soft quota only)
  and the unlinked ``old_project``; quotas enabled; two snapshots, one of them a fileset snapshot
  with an SMB-style ``@GMT-...`` name;
* ``archive`` mounted at ``/gpfs/archive``: one pool, the root fileset, quotas not enabled.

``scan.list.hubscan`` is a list file as ``mmapplypolicy -I defer`` writes it for the driver's
own LIST rule (``ESCAPE '%/'``): names with a blank, a newline, ``%`` and `` -- ``, UTF-8 and a
Latin-1 byte, a directory, a symlink, HSM records (premigrated, migrated, and a corrupt one).

``FakeGpfs`` puts executables named like the real commands into a bin directory (see
``fake_mm.py`` for what they do) and answers, by default, with the recorded output.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COMMANDS = ("mmlsfs", "mmdf", "mmlsfileset", "mmrepquota", "mmlsquota", "mmlssnapshot", "mmcrsnapshot",
            "mmdelsnapshot", "mmapplypolicy")
QUOTAS_OFF = ("mmrepquota: Quota management is not enabled for file system archive.\n"
              "mmrepquota: Command failed. Examine previous error messages to determine cause.\n")


def recorded(name: str) -> Path:
    """The path of a recorded output file."""
    return HERE / name


def _recorded_snapshots() -> list[dict[str, Any]]:
    snapshots = []
    for line in recorded("mmlssnapshot_gpfs1.txt").read_text().splitlines():
        fields = line.split(":")
        if fields[2] != "HEADER":
            snapshots.append({"device": fields[6], "name": fields[7], "id": int(fields[8]), "status": fields[9],
                              "created": fields[10], "fileset": fields[14]})
    return snapshots


class FakeGpfs:
    """A bin directory of fake mm commands, their instructions, and what they were asked to do."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name in COMMANDS:
            script = bin_dir / name
            script.write_text(
                f"#!{sys.executable} -I\nimport sys\nsys.path.insert(0, {str(HERE)!r})\nimport fake_mm\n"
                f"sys.exit(fake_mm.main({name!r}, {str(bin_dir)!r}, sys.argv[1:]))\n")
            script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.rules: list[dict[str, Any]] = []
        for command, args, name in (
            ("mmlsfs", ["all", "-Y"], "mmlsfs_all.txt"),
            ("mmlsfs", ["gpfs1", "-T", "-Y"], "mmlsfs_gpfs1_T.txt"),
            ("mmdf", ["gpfs1", "-Y"], "mmdf_gpfs1.txt"),
            ("mmdf", ["archive", "-Y"], "mmdf_archive.txt"),
            ("mmlsfileset", ["gpfs1", "-L", "-Y"], "mmlsfileset_gpfs1.txt"),
            ("mmlsfileset", ["archive", "-L", "-Y"], "mmlsfileset_archive.txt"),
            ("mmrepquota", ["-j", "-Y", "gpfs1"], "mmrepquota_gpfs1.txt"),
            ("mmlsquota", ["-j", "projects", "-Y", "gpfs1"], "mmlsquota_gpfs1_projects.txt"),
        ):
            self.rules.append({"command": command, "args": args, "stdout_file": str(recorded(name))})
        self.rules.append({"command": "mmrepquota", "args": ["-j", "-Y", "archive"], "stderr": QUOTAS_OFF,
                           "exit": 1})
        self.policy_lists = {"hubscan": str(recorded("scan.list.hubscan"))}
        self._write_control()
        (bin_dir / "state.json").write_text(json.dumps({"snapshots": _recorded_snapshots()}))

    def _write_control(self) -> None:
        (self.bin_dir / "control.json").write_text(json.dumps({"rules": self.rules,
                                                               "policy_lists": self.policy_lists}))

    def respond(self, command: str, args: list[str] | None = None, *, stdout: str = "", stdout_file: str | None = None,
                stderr: str = "", exit: int = 0, sleep: float = 0, child: bool = False, ignore_term: bool = False,
                times: int | None = None, signal: int | None = None) -> None:
        """Make ``command`` (with exactly ``args``; any arguments when None) answer like this,
        ahead of every earlier rule; ``times`` limits how often the rule applies."""
        rule = {"command": command, "args": args, "stdout": stdout, "stderr": stderr, "exit": exit, "sleep": sleep,
                "child": child, "ignore_term": ignore_term, "times": times, "signal": signal}
        if stdout_file is not None:
            rule["stdout_file"] = stdout_file
        self.rules.insert(0, rule)
        self._write_control()

    def set_policy_list(self, name: str, path: Path | None) -> None:
        """Make ``mmapplypolicy`` write ``path`` as the list ``name`` (None: write no list)."""
        if path is None:
            self.policy_lists.pop(name, None)
        else:
            self.policy_lists[name] = str(path)
        self._write_control()

    def calls(self, command: str | None = None) -> list[dict[str, Any]]:
        """Every invocation logged so far (without the child-pid notes), in order."""
        path = self.bin_dir / "calls.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        return [e for e in entries if "args" in e and (command is None or e["command"] == command)]

    def children(self) -> list[int]:
        """Pids of the children fake commands started (to prove they were killed)."""
        path = self.bin_dir / "calls.jsonl"
        return [e["child"] for e in map(json.loads, path.read_text().splitlines()) if "child" in e]

    def snapshot_names(self, device: str = "gpfs1") -> list[tuple[str, str]]:
        """``(name, fileset)`` of the fake filesystem's snapshots now."""
        state = json.loads((self.bin_dir / "state.json").read_text())
        return [(s["name"], s["fileset"]) for s in state["snapshots"] if s["device"] == device]


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


__all__ = ["COMMANDS", "FakeGpfs", "HERE", "process_alive", "recorded"]
