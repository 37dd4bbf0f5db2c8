"""A stand-in for IBM Storage Scale's ``mm*`` commands, for tests on machines without GPFS.

Each fake command in a test's bin directory is a two-line Python wrapper (written by
``FakeGpfs``) that calls ``main(<command name>, <bin dir>, argv)``. The bin directory holds:

* ``control.json`` - the test's instructions: ``rules`` (first match wins) saying what a command
  with given arguments prints and how it exits, sleeps or hangs; ``policy_lists`` naming the
  recorded list file ``mmapplypolicy`` "produces" for each LIST name;
* ``calls.jsonl`` - one line per invocation: command, argv, the environment it saw, its pid (and
  a child's pid when it started one), the policy rules it was given;
* ``state.json`` - the snapshots the fake filesystem has, so ``mmcrsnapshot``/``mmdelsnapshot``
  change what ``mmlssnapshot`` prints, as on a real cluster (including their refusal to create an
  existing snapshot or delete a missing one).

Only the standard library: the commands run with the small environment the agent's helper gives
them, exactly as the real ones would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import quote

SNAPSHOT_HEADER = ("mmlssnapshot::HEADER:version:reserved:reserved:filesystemName:directory:snapID:status:created:"
                   "quotas:data:metadata:fileset:snapType:")


def _load(path: str, default: object) -> object:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default


def _save(path: str, data: object) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _log(bin_dir: str, entry: dict) -> None:
    with open(os.path.join(bin_dir, "calls.jsonl"), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()


def _option(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def _ctime_encoded(seconds: float) -> str:
    return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(seconds)).replace(":", "%3A")


def main(command: str, bin_dir: str, args: list[str]) -> int:
    control = _load(os.path.join(bin_dir, "control.json"), {})
    state_path = os.path.join(bin_dir, "state.json")
    state = _load(state_path, {})
    entry = {"command": command, "args": args, "env": dict(os.environ), "pid": os.getpid()}
    if command == "mmapplypolicy" and _option(args, "-P"):
        with open(_option(args, "-P"), encoding="utf-8") as fh:
            entry["rules_text"] = fh.read()
    _log(bin_dir, entry)

    for index, rule in enumerate(control.get("rules", [])):
        if rule["command"] != command or (rule.get("args") is not None and rule["args"] != args):
            continue
        used = state.setdefault("used", {}).get(str(index), 0)
        if rule.get("times") is not None and used >= rule["times"]:
            continue
        state["used"][str(index)] = used + 1
        _save(state_path, state)
        return _respond(command, bin_dir, rule)

    builtin = {"mmlssnapshot": _lssnapshot, "mmcrsnapshot": _crsnapshot, "mmdelsnapshot": _delsnapshot,
               "mmapplypolicy": _applypolicy}.get(command)
    if builtin is None:
        sys.stderr.write(f"{command}: the fake has no response for {args}\n")
        return 2
    return builtin(args, control, state, state_path)


def _respond(command: str, bin_dir: str, rule: dict) -> int:
    if rule.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if rule.get("child"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        _log(bin_dir, {"command": command, "pid": os.getpid(), "child": child.pid})
    if rule.get("stdout_file"):
        with open(rule["stdout_file"], encoding="utf-8") as fh:
            sys.stdout.write(fh.read())
    sys.stdout.write(rule.get("stdout", ""))
    sys.stdout.flush()
    sys.stderr.write(rule.get("stderr", ""))
    sys.stderr.flush()
    if rule.get("sleep"):
        time.sleep(rule["sleep"])
    if rule.get("signal"):
        os.kill(os.getpid(), rule["signal"])
    return int(rule.get("exit", 0))


# --- snapshots -------------------------------------------------------------------------------------

def _lssnapshot(args: list[str], control: dict, state: dict, state_path: str) -> int:
    device, fileset = args[0], _option(args, "-j")
    rows = [s for s in state.get("snapshots", []) if s["device"] == device
            and (fileset is None or s["fileset"] == fileset)]
    if not rows:
        print(f"No snapshots in file system {device}")
        return 0
    print(SNAPSHOT_HEADER)
    for s in rows:
        print(f"mmlssnapshot::0:1:::{device}:{s['name']}:{s['id']}:{s['status']}:{s['created']}::0:0:{s['fileset']}::")
    return 0


def _crsnapshot(args: list[str], control: dict, state: dict, state_path: str) -> int:
    device, name, fileset = args[0], args[1], _option(args, "-j") or ""
    snapshots = state.setdefault("snapshots", [])
    if any(s["device"] == device and s["name"] == name and s["fileset"] == fileset for s in snapshots):
        sys.stderr.write(f"Snapshot {name} already exists.\n"
                         "mmcrsnapshot: Command failed. Examine previous error messages to determine cause.\n")
        return 1
    snap_id = max([s["id"] for s in snapshots] + [0]) + 1
    snapshots.append({"device": device, "name": name, "id": snap_id, "status": "Valid",
                      "created": _ctime_encoded(time.time()), "fileset": fileset})
    _save(state_path, state)
    print(f"Flushing dirty data for snapshot {device}::{name}...\nQuiescing all file system operations.\n"
          f"Snapshot {device}::{name} created with id {snap_id}.")
    return 0


def _delsnapshot(args: list[str], control: dict, state: dict, state_path: str) -> int:
    device, name, fileset = args[0], args[1], _option(args, "-j") or ""
    snapshots = state.setdefault("snapshots", [])
    kept = [s for s in snapshots if not (s["device"] == device and s["name"] == name and s["fileset"] == fileset)]
    if len(kept) == len(snapshots):
        sys.stderr.write(f"mmdelsnapshot: 6027-2683 [E] Snapshot {name} does not exist in file system {device}.\n"
                         "mmdelsnapshot: Command failed. Examine previous error messages to determine cause.\n")
        return 1
    state["snapshots"] = kept
    _save(state_path, state)
    print(f"Invalidating snapshot files in {device}::{name}...\nDeleting files in snapshot {device}::{name}...\n"
          f"Delete snapshot {device}::{name} complete, err = 0")
    return 0


# --- policy ----------------------------------------------------------------------------------------

def _applypolicy(args: list[str], control: dict, state: dict, state_path: str) -> int:
    rules_file, prefix = _option(args, "-P"), _option(args, "-f")
    if not args or not args[0].startswith("/") or rules_file is None or prefix is None:
        sys.stderr.write("mmapplypolicy: usage error\n")
        return 1
    with open(rules_file, encoding="utf-8") as fh:
        rules = fh.read()
    names = re.findall(r"RULE\s+EXTERNAL\s+LIST\s+'([^']+)'", rules)
    print(f"[I] GPFS Current Data Pool Utilization in KB and %\n[I] Loaded policy rules from {quote(rules_file)}.")
    for name in names:
        recorded = control.get("policy_lists", {}).get(name)
        if recorded:
            shutil.copyfile(recorded, f"{prefix}.list.{name}")
    print("[I] A total of 10 files have been migrated, deleted or processed by an EXTERNAL EXEC/script;")
    return 0
