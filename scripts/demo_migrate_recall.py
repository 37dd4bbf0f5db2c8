#!/usr/bin/env python3
"""Migrate a few files of the demo site to its folder target, then recall them (after ``make run``).

Run it from the repository in a second terminal while ``make run`` is up::

    python3 scripts/demo_migrate_recall.py

It does what a client of the REST API would do, one step at a time, and prints each:

1. signs in as the administrator (``POST /api/auth/token/``; the password is read from
   ``HUB_ADMIN_PASSWORD`` or ``var/admin_password``, where ``make run`` keeps it);
2. finds space ``demo`` and its target ``demo-folder`` (``/api/spaces/``, ``/api/external_targets/``)
   and waits until the demo agent has confirmed both;
3. writes a few files (random bytes, and a text file) into a new directory of the space and
   records their SHA-256;
4. launches the built-in ``migrate`` workflow on that directory (``POST /api/file/workflow/``,
   202 with the job) and polls ``GET /api/jobs/{id}/`` until the job ends; the files are now
   stubs: same size, data blocks released (what ``du`` and ``stat`` show), HSM state
   ``migrated`` in the ``user.hub.hsm`` extended attribute, the bytes in the target's folder;
5. launches ``recall`` on the same directory and waits for it;
6. compares each file's SHA-256 with the one before the migration.

Exit status 0 when every check passed, 1 otherwise (each failed check is printed). Only the
standard library is used, so any Python 3.11+ runs it; it must run on the machine of the demo
agent, since it writes and reads the space's files directly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# The API's terminal job states. A client of the API has no import of ``workflows.states`` (it
# needs Django); the acceptance test checks that this tuple equals ``JOB_TERMINAL``.
TERMINAL_STATES = ("SUCCESS", "HAS_FAILURES", "FAILURE", "SKIPPED", "CANCELLED")
SUCCESS = "SUCCESS"
PROCESSED = "processed"  # a path's state once its task did the work

HSM_XATTR = "user.hub.hsm"  # the agent's per-file record (agent/hsm/state.py)
MIGRATED = "migrated"  # its state for a stub

# Name -> size. Big enough that a released file is visibly smaller on disk than its size (an
# extended attribute may take a block of its own), small enough to take a second.
DEMO_FILES = {
    "notes.txt": 96 << 10,
    "photo.raw": 1 << 20,
    "results/run-1.dat": 3 << 20,
    "results/run-2.dat": 512 << 10,
}
TEXT = b"The hub keeps a copy of these lines in the target's folder.\n"  # the .txt file's content


class DemoError(Exception):
    """A step could not be done; the message says what to do about it."""


class Unreachable(DemoError):
    """Nothing answers at the hub's address (not started, or still starting)."""


# --- the hub's API -----------------------------------------------------------------------------

class Hub:
    """A JSON client of the hub's REST API with a bearer token."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.token: str | None = None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise DemoError(f"{method} {path} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, ConnectionError) as exc:  # refused, or reset by a server still starting
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach the hub at {self.base} ({reason}); is `make run` up?") from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("POST", path, body)

    def sign_in(self, username: str, password: str, *, wait: float) -> None:
        """Get a token; while nothing answers (``make run`` still starting), retry for ``wait`` s."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.token = self.post("/api/auth/token/", {"username": username, "password": password})["access"]
                return
            except Unreachable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


# --- files ---------------------------------------------------------------------------------------

@dataclass
class FileReport:
    """One demo file through the demo: what it was, what migrate left, what recall gave back."""

    path: str
    size: int
    sha256_before: str
    on_disk_before: int
    on_disk_stub: int | None = None
    size_stub: int | None = None
    hsm_after_migrate: str | None = None
    object_key: str | None = None
    sha256_after: str | None = None
    on_disk_after: int | None = None
    hsm_after_recall: str | None = None


@dataclass
class Report:
    """What the demo did (``--report`` writes it as JSON for scripts and tests)."""

    hub: str
    directory: str = ""
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[FileReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def on_disk(path: Path) -> int:
    """Bytes allocated to the file (what ``du`` counts), not its size (what ``ls -l`` shows)."""
    return os.stat(path).st_blocks * 512


def hsm_record(path: Path) -> dict[str, Any] | None:
    """The agent's HSM record of the file, or None when unmanaged or unreadable here."""
    try:
        return json.loads(os.getxattr(path, HSM_XATTR))
    except (OSError, AttributeError, ValueError):  # no xattr, no os.getxattr (not Linux), bad JSON
        return None


def human(size: int | None) -> str:
    """``size`` bytes for a person: 512 B, 96.0 KiB, 3.0 MiB."""
    if size is None:
        return "?"
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


# --- the steps -----------------------------------------------------------------------------------

def say(text: str = "") -> None:
    print(text, flush=True)


def find_demo(hub: Hub, *, space_name: str, wait: float) -> tuple[Path, str | None]:
    """The space's mountpoint and its ready target's folder, once the demo agent confirmed both."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        spaces = [s for s in hub.get("/api/spaces/?page_size=0")["results"] if s["name"] == space_name]
        if not spaces:
            raise DemoError(f"no space '{space_name}': run `make run` (or `manage.py ensure_demo`) first")
        space = spaces[0]
        targets = [t for t in hub.get("/api/external_targets/?page_size=0")["results"]
                   if (t.get("space") or {}).get("name") == space_name]
        ready = [t for t in targets if t["is_ready"]]
        if space["is_ready"] and ready:
            target = ready[0]
            say(f"      space '{space_name}' at {space['mountpoint']}; target '{target['name']}' ready"
                + (f" (folder {target['bucket'].get('migration_target_folder')})"
                   if target.get("bucket", {}).get("migration_target_folder") else ""))
            return Path(space["mountpoint"]), target.get("bucket", {}).get("migration_target_folder")
        if time.monotonic() > deadline:
            raise DemoError(f"space '{space_name}' or its target not ready after {wait:.0f}s: is the demo agent "
                            "running (`make run` starts it; see its log)?")
        if not told:
            say("      waiting for the demo agent to confirm the space and its target ...")
            told = True
        time.sleep(1)


def write_files(directory: Path) -> list[FileReport]:
    """Write ``DEMO_FILES`` (random bytes, and one text file to open) and record their SHA-256."""
    files = []
    for name, size in DEMO_FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (TEXT * (size // len(TEXT) + 1))[:size] if name.endswith(".txt") else os.urandom(size)
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # so `du` counts the blocks now, not after writeback
        files.append(FileReport(path=str(path), size=path.stat().st_size, sha256_before=sha256(path),
                                on_disk_before=on_disk(path)))
    return files


def run_workflow(hub: Hub, *, workflow: str, directory: Path, timeout: float) -> dict[str, Any]:
    """Launch ``workflow`` on ``directory`` and poll its job until it ends; the final job."""
    started = time.monotonic()
    job = hub.post("/api/file/workflow/", {"site": "demo", "workflow": workflow, "paths": [str(directory)]})
    say(f"      POST /api/file/workflow/ -> 202, job {job['id']} {job['state']} ({job['url']})")
    shown = job["state"]
    while job["state"] not in TERMINAL_STATES:
        if time.monotonic() - started > timeout:
            raise DemoError(f"job {job['id']} still {job['state']} after {timeout:.0f}s"
                            + (f": {job['state_reason']}" if job.get("state_reason") else ""))
        time.sleep(0.25)
        job = hub.get(f"/api/jobs/{job['id']}/")
        if job["state"] != shown:
            shown = job["state"]
            reason = f" ({job['state_reason']})" if job.get("state_reason") else ""
            say(f"      job {job['id']}: {shown}{reason}, {job['progress']:.0f}%")
    counts = job["counts"]
    say(f"      job {job['id']} {job['state']} in {time.monotonic() - started:.1f}s: "
        f"{counts['processed']} processed, {counts['failed']} failed, {counts['aborted']} aborted, "
        f"{counts['skipped']} skipped, {human(counts['bytes_processed'])} moved")
    job["files"] = {item["path"]: item for item in hub.get(f"/api/jobs/{job['id']}/files/?page_size=0")["results"]}
    return job


def check_job(report: Report, job: dict[str, Any]) -> None:
    """The job ended SUCCESS and ``/api/jobs/{id}/files/`` has every file processed."""
    name = job["workflow"]
    report.jobs[name] = {"id": job["id"], "state": job["state"], "counts": job["counts"], "url": job["url"]}
    if job["state"] != SUCCESS:
        report.problems.append(f"{name} job {job['id']} ended {job['state']}: {job.get('state_reason') or ''}")
    for file in report.files:
        result = job["files"].get(file.path)
        if result is None:
            report.problems.append(f"{name}: no result for {file.path} in /api/jobs/{job['id']}/files/")
        elif result["state"] != PROCESSED:
            report.problems.append(f"{name}: {file.path} {result['state']}: {result['message']}")


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("      " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def check_stubs(report: Report, *, objects: str | None, names: dict[str, str]) -> None:
    """After migrate: same size, blocks released, HSM state ``migrated``, the bytes in the target."""
    rows = [("file", "size", "on disk", "hsm state", "remote copy")]
    for file in report.files:
        path = Path(file.path)
        file.size_stub, file.on_disk_stub = path.stat().st_size, on_disk(path)
        record = hsm_record(path) or {}
        file.hsm_after_migrate, file.object_key = record.get("state"), record.get("key")
        remote = "?"
        if objects and file.object_key and (Path(objects) / file.object_key).is_file():
            same = sha256(Path(objects) / file.object_key) == file.sha256_before
            remote = f"{objects}/{file.object_key}" + ("" if same else " (DIFFERENT BYTES)")
            if not same:
                report.problems.append(f"{file.path}: the remote copy differs from the original")
        rows.append((names[file.path], human(file.size_stub), human(file.on_disk_stub),
                     file.hsm_after_migrate or "?", remote))
        if file.size_stub != file.size:
            report.problems.append(f"{file.path}: size {file.size_stub} after migrate, was {file.size}")
        if file.on_disk_stub >= file.size:
            report.problems.append(f"{file.path}: {file.on_disk_stub} bytes on disk after migrate, blocks not "
                                   "released")
        if file.hsm_after_migrate not in (None, MIGRATED):
            report.problems.append(f"{file.path}: HSM state {file.hsm_after_migrate} after migrate")
    table(rows)
    say("      stubs: the size is kept (ls -l, stat -c %s), the data blocks are released (du, stat -c %b)")


def check_recalled(report: Report, *, names: dict[str, str]) -> None:
    """After recall: the SHA-256 of before the migration, the blocks back, HSM state ``hydrated``."""
    rows = [("file", "size", "on disk", "hsm state", "sha256", "")]
    for file in report.files:
        path = Path(file.path)
        file.sha256_after, file.on_disk_after = sha256(path), on_disk(path)
        file.hsm_after_recall = (hsm_record(path) or {}).get("state")
        same = file.sha256_after == file.sha256_before
        rows.append((names[file.path], human(path.stat().st_size), human(file.on_disk_after),
                     file.hsm_after_recall or "?", file.sha256_after[:16] + "...", "same" if same else "DIFFERENT"))
        if not same:
            report.problems.append(f"{file.path}: SHA-256 {file.sha256_after} after recall, "
                                   f"{file.sha256_before} before")
    table(rows)


def demo(args: argparse.Namespace) -> Report:
    """The six steps; raises DemoError when one cannot be done, records failed checks."""
    began = time.monotonic()
    hub = Hub(args.hub)
    report = Report(hub=hub.base)

    say(f"[1/6] Sign in to {hub.base} as {args.user}")
    hub.sign_in(args.user, args.password(), wait=args.wait)

    say("[2/6] Find the demo space and its target")
    mountpoint, objects = find_demo(hub, space_name=args.space, wait=args.wait)

    # A new directory each run: a file migrated by an earlier run is already a stub.
    directory = mountpoint / time.strftime("demo-%Y%m%d-%H%M%S")
    while directory.exists():
        directory = directory.with_name(directory.name + "-1")
    report.directory = str(directory)
    say(f"[3/6] Write {len(DEMO_FILES)} files into {directory}")
    report.files = write_files(directory)
    names = {file.path: os.path.relpath(file.path, directory) for file in report.files}
    table([("file", "size", "on disk", "sha256"),
           *((names[f.path], human(f.size), human(f.on_disk_before), f.sha256_before[:16] + "...")
             for f in report.files)])

    say("[4/6] Migrate them (the built-in workflow 'migrate')")
    check_job(report, run_workflow(hub, workflow="migrate", directory=directory, timeout=args.timeout))
    check_stubs(report, objects=objects, names=names)

    say("[5/6] Recall them (the built-in workflow 'recall')")
    check_job(report, run_workflow(hub, workflow="recall", directory=directory, timeout=args.timeout))

    say("[6/6] Compare SHA-256 before and after")
    check_recalled(report, names=names)
    report.seconds = round(time.monotonic() - began, 2)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    var = Path(os.environ.get("HUB_VAR_DIR") or ROOT / "var")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub", default=os.environ.get("HUB_URL")
                        or f"http://127.0.0.1:{os.environ.get('HUB_PORT') or 8000}",
                        help="the hub's address (default: $HUB_URL, else http://127.0.0.1:$HUB_PORT or 8000)")
    parser.add_argument("--user", default=os.environ.get("HUB_ADMIN_USER") or "admin")
    parser.add_argument("--password-file", type=Path, default=var / "admin_password",
                        help="read when $HUB_ADMIN_PASSWORD is not set (default: $HUB_VAR_DIR/admin_password)")
    parser.add_argument("--space", default="demo", help="the demo space's name")
    parser.add_argument("--wait", type=float, default=120,
                        help="seconds to wait for the hub and the demo agent to be up")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for each job")
    parser.add_argument("--report", type=Path, help="also write what was done as JSON to this file")
    args = parser.parse_args(argv)

    def password() -> str:
        if os.environ.get("HUB_ADMIN_PASSWORD"):
            return os.environ["HUB_ADMIN_PASSWORD"]
        try:
            return args.password_file.read_text().strip()
        except OSError as exc:
            raise DemoError(f"no password: set HUB_ADMIN_PASSWORD or pass --password-file ({exc})") from None

    args.password = password
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = demo(args)
    except DemoError as exc:
        say(f"error: {exc}")
        return 1
    if args.report:
        args.report.write_text(json.dumps(asdict(report), indent=2))
    if report.problems:
        say(f"FAILED after {report.seconds:.1f}s:")
        for problem in report.problems:
            say(f"  - {problem}")
        return 1
    say(f"OK in {report.seconds:.1f}s: {len(report.files)} files migrated to stubs and recalled with the same "
        f"SHA-256. Jobs: {', '.join(job['url'] for job in report.jobs.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
