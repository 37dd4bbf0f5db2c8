"""``make run`` on a fresh machine: the hub starts with a demo site whose agent is running, and
the README's example migrates and recalls files through it.

The acceptance test does what the Makefile does (migrate, ensure_admin, ensure_demo, runhub) in
a fresh ``HUB_VAR_DIR`` with SQLite and the filesystem broker, then reads the API as a client
would: the demo node is online, its pool is listed, and the demo folder target becomes ready
once the agent has confirmed its configure order. Then it runs
``scripts/demo_migrate_recall.py`` as the README tells a new user to (standard library only:
the interpreter runs with ``-S``, no site-packages), and checks on its own what the script
claims: both jobs ended SUCCESS with every file processed (``/api/jobs/``, ``/api/jobs/{id}/``,
``/api/jobs/{id}/files/``), the stubs kept their size and released their blocks, the target's
folder holds the original bytes, and the recalled files have their original SHA-256. Ctrl-C
(SIGINT) on ``runhub`` must leave no process of its tree running (checked by PID).

The other tests pin ``ensure_demo``'s rules in-process: idempotent, never touches a real
estate, off with ``HUB_DEMO=0``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from agent.hsm.state import HsmState, read_record
from tests.integration.test_agent_against_hub import api, free_port, poll
from tests.integration.test_agent_reports import manage
from workflows.states import JOB_TERMINAL, JobState, PathState

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]
DEMO_SCRIPT = ROOT / "scripts" / "demo_migrate_recall.py"
CHILDREN = {"web", "worker", "beat", "agent"}  # what runhub starts with the demo on


# --- processes by PID (Linux /proc) ---------------------------------------------------------------

def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and ')'
    return int(fields[1]), fields[0], fields[19]


def process_tree(root: int) -> dict[int, str]:
    """``root`` and all its descendants now: pid -> start time (so a reused PID is not mistaken)."""
    parents: dict[int, int] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], starts[int(entry.name)] = info[0], info[2]
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            tree[pid] = starts[pid]
            todo.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def still_running(tree: dict[int, str]) -> list[int]:
    """PIDs of ``tree`` still running (a zombie waiting to be reaped has stopped)."""
    running = []
    for pid, start in tree.items():
        info = _stat(pid)
        if info is not None and info[1] != "Z" and info[2] == start:
            running.append(pid)
    return running


def command_lines(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            lines.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            lines.append(f"{pid}: (gone)")
    return "\n".join(lines)


# --- the acceptance test ----------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="checks processes through Linux /proc")
def test_make_run_starts_a_demo_site_that_migrates_and_recalls_files_and_ctrl_c_stops_everything(tmp_path):
    var = tmp_path / "var"
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("AGENT_")
           and key not in ("DATABASE_URL", "HUB_ADMIN_PASSWORD", "HUB_DEMO", "HUB_URL")}
    env.update({"HUB_VAR_DIR": str(var), "HUB_PORT": str(port), "BROKER_URL": "filesystem://",
                "HUB_ADMIN_USER": "admin"})

    manage(env, "migrate", "--noinput")
    password = re.search(r"password: (\S+)", manage(env, "ensure_admin")).group(1)
    made = manage(env, "ensure_demo")
    assert "created site 'demo'" in made and "external target 'demo-folder'" in made, made
    assert "already in place" in manage(env, "ensure_demo")  # idempotent: nothing made twice
    assert (var / "demo" / "data").is_dir() and (var / "demo" / "objects").is_dir()

    log = tmp_path / "runhub.log"
    with open(log, "wb") as handle:  # a file, not a pipe: three chatty children must never block on it
        runhub = subprocess.Popen([sys.executable, "manage.py", "runhub"], cwd=ROOT, env=env,
                                  stdout=handle, stderr=subprocess.STDOUT)
    tree: dict[int, str] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        token = poll(lambda: api(base, "/api/auth/token/", body={"username": "admin", "password": password}),
                     60, "the web server", [log])["access"]
        started = dict(re.findall(r"started (\w+) \(pid (\d+)\)", log.read_text()))
        assert set(started) == CHILDREN, log.read_text()

        def demo_nodes() -> list[dict[str, Any]]:
            return [node for node in api(base, "/api/nodes/?page_size=0", token=token)["results"]
                    if node["site"] == "demo" and node["online"]]

        [node] = poll(demo_nodes, 90, "an online node of site demo", [log])
        assert node["has_default_queue"]

        def demo_pools() -> list[dict[str, Any]]:
            return [pool for pool in api(base, "/api/storagepools/?page_size=0", token=token)["results"]
                    if pool["site_name"] == "demo"]

        [pool] = poll(demo_pools, 60, "the pool of site demo", [log])
        assert pool["capacity"] > 0

        def ready_target() -> list[dict[str, Any]]:
            return [target for target in api(base, "/api/external_targets/?page_size=0", token=token)["results"]
                    if target["name"] == "demo-folder" and target["is_ready"]]

        [target] = poll(ready_target, 60, "external target demo-folder ready", [log])
        assert target["bucket"]["storage_type"] == "fs"
        assert target["bucket"]["migration_target_folder"] == str((var / "demo" / "objects").resolve())
        # The space's order travelled too: the agent made its directory under its root.
        assert (var / "demo" / "data" / "projects").is_dir()

        # The README's example, run as a user would, in the same environment as make run.
        report_file = tmp_path / "demo.json"
        began = time.monotonic()
        demo = subprocess.run([sys.executable, "-S", str(DEMO_SCRIPT), "--report", str(report_file)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        seconds = time.monotonic() - began
        assert demo.returncode == 0, f"{demo.stdout}\n{demo.stderr}\n--- runhub\n{log.read_text()[-3000:]}"
        assert seconds < 60, f"the demo took {seconds:.0f}s\n{demo.stdout}"
        for step in ("[1/6]", "[4/6] Migrate", "[5/6] Recall", "[6/6] Compare SHA-256", "OK in"):
            assert step in demo.stdout, demo.stdout
        assert_migrated_and_recalled(json.loads(report_file.read_text()), base=base, token=token, var=var)

        tree = process_tree(runhub.pid)
        assert {int(pid) for pid in started.values()} <= set(tree)
    finally:
        runhub.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            runhub.wait(60)
        except subprocess.TimeoutExpired:
            runhub.kill()
            runhub.wait()
    output = log.read_text()
    assert runhub.returncode == 0, output[-3000:]
    assert manage(env, "agent_key", "demo").strip() not in output  # handed to the agent, never printed
    for name in CHILDREN:
        assert f"stopped {name}" in output, output[-3000:]
    # Grandchildren (gunicorn and Celery pool processes, the agent's queue workers) go with their
    # parents, a moment after them.
    deadline = time.monotonic() + 15
    while (left := still_running(tree)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left running:\n{command_lines(left)}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_migrated_and_recalled(report: dict[str, Any], *, base: str, token: str, var: Path) -> None:
    """Check through the API and on disk, not from the script's word, what the demo did."""
    space, objects = var.resolve() / "demo" / "data" / "projects", var.resolve() / "demo" / "objects"
    files = report["files"]
    paths = {file["path"] for file in files}
    assert len(files) >= 3 and all(Path(path).parent.is_relative_to(space) for path in paths), report

    listed = {job["id"]: job for job in api(base, "/api/jobs/?page_size=0", token=token)["results"]}
    for workflow in ("migrate", "recall"):
        job_id = report["jobs"][workflow]["id"]
        assert listed[job_id]["workflow"] == workflow
        job = api(base, f"/api/jobs/{job_id}/", token=token)
        assert job["state"] == JobState.SUCCESS, job
        assert job["paths"] == [report["directory"]] and job["site"] == "demo"
        counts = job["counts"]
        assert (counts["paths_total"], counts["processed"], counts["failed"], counts["aborted"]) == (
            len(files), len(files), 0, 0), counts
        assert counts["bytes_processed"] == sum(file["size"] for file in files)
        results = api(base, f"/api/jobs/{job_id}/files/?page_size=0", token=token)["results"]
        assert {result["path"]: result["state"] for result in results} == dict.fromkeys(paths, PathState.PROCESSED)

    for file in files:
        path = Path(file["path"])
        # After migrate: a stub of the same size whose blocks were released; the bytes went to
        # the target's folder under the key the file's HSM record names.
        assert file["hsm_after_migrate"] == HsmState.MIGRATED
        assert file["size_stub"] == file["size"] and file["on_disk_stub"] < file["size"] // 4, file
        assert sha256(objects / file["object_key"]) == file["sha256_before"]
        # After recall: the original content, resident again.
        assert sha256(path) == file["sha256_before"]
        assert path.stat().st_size == file["size"] and path.stat().st_blocks * 512 >= file["size"]
        assert read_record(path).state == HsmState.HYDRATED


def test_demo_script_knows_the_api_terminal_job_states(monkeypatch):
    """The script runs without Django, so it spells the terminal states; they must stay the API's."""
    spec = importlib.util.spec_from_file_location("demo_migrate_recall", DEMO_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # dataclasses look their module up
    spec.loader.exec_module(script)
    assert set(script.TERMINAL_STATES) == set(JOB_TERMINAL)
    assert script.SUCCESS == JobState.SUCCESS and script.PROCESSED == PathState.PROCESSED
    assert script.MIGRATED == HsmState.MIGRATED


# --- ensure_demo's rules ------------------------------------------------------------------------

def ensure_demo() -> str:
    out = StringIO()
    call_command("ensure_demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_ensure_demo_makes_the_estate_once(settings, tmp_path, django_capture_on_commit_callbacks):
    from sites.models import Bucket, ExternalTarget, SettingsTask, Site, Space

    settings.VAR_DIR = tmp_path
    # Orders are captured, not published: the test's transaction never commits.
    with django_capture_on_commit_callbacks() as published:
        first = ensure_demo()
    assert "created site 'demo'" in first
    site = Site.objects.get(name="demo")
    space = Space.objects.get(name="demo")
    assert space.mountpoint == str(tmp_path.resolve() / "demo" / "data" / "projects")
    assert list(space.placements.values_list("site__name", flat=True)) == ["demo"]
    target = ExternalTarget.objects.get(name="demo-folder")
    assert target.bucket.storage_type == Bucket.StorageType.FS
    assert target.bucket.migration_target_folder == str(tmp_path.resolve() / "demo" / "objects")
    assert list(target.available_on_sites.all()) == [site]
    assert sorted(SettingsTask.objects.values_list("tasktype", flat=True)) == ["configure_target", "create_space"]
    assert len(published) == 2  # both orders go out on commit

    second = ensure_demo()
    assert "already in place" in second
    assert (Site.objects.count(), Space.objects.count(), Bucket.objects.count(), SettingsTask.objects.count()) == (
        1, 1, 1, 2)


@pytest.mark.django_db
def test_ensure_demo_leaves_a_real_estate_alone(settings, tmp_path):
    from sites.models import Site
    from sites.services.sites import create_site

    settings.VAR_DIR = tmp_path
    create_site(None, name="gpfs-lab", shortcode="lab")
    output = ensure_demo()
    assert "not made" in output and "gpfs-lab" in output
    assert list(Site.objects.values_list("name", flat=True)) == ["gpfs-lab"]
    assert not (tmp_path / "demo").exists()


@pytest.mark.django_db
def test_hub_demo_0_makes_no_demo_and_starts_no_agent(settings, tmp_path):
    from hub.management.commands.runhub import Command
    from sites.models import Site

    settings.VAR_DIR = tmp_path
    settings.HUB_DEMO = False
    assert "HUB_DEMO=0" in ensure_demo()
    assert not Site.objects.exists()
    options = {"bind": "127.0.0.1", "port": 8000, "workers": 1, "worker_concurrency": 1}
    assert set(Command().commands(options)) == CHILDREN - {"agent"}

    settings.HUB_DEMO = True
    ensure_demo()
    children = Command().commands(options)
    assert set(children) == CHILDREN
    agent = children["agent"]
    assert agent.command[-4:] == ["--site", "demo", "--root", str(tmp_path.resolve() / "demo" / "data")]
    assert agent.env["AGENT_KEY"] == Site.objects.get(name="demo").agent_key
    assert "AGENT_KEY" not in " ".join(agent.command) and agent.env["HUB_VAR_DIR"] == str(tmp_path)
