"""A real estate for the workflow engine's end-to-end tests: every part a process of its own.

``Estate`` starts, on this machine and in a temporary folder:

* a migrated hub database (a SQLite file) with an administrator whose password the test chose;
* the web server (``manage.py runserver --noreload``) on a free port, reached over HTTP only;
* the hub worker (``celery -A hub worker -Q <hub queue> --pool solo``) on Redis, consuming a
  hub queue named for this run, so parallel runs (xdist workers, other checkouts) sharing the
  Redis server never take each other's reports;
* a moto S3 server (``python -m moto.server``), a subprocess so that it can be stopped and
  started again on the same port (a target outage);
* two agents (``python -m agent run``) for two sites, each in a mount namespace of its own
  (``unshare -m``) where the one space path is a bind mount of that site's folder: a space
  spans sites with the same path on each, and here the same path shows each agent a different
  folder, as two sites' filesystems would. The test reads and writes the sites' folders
  directly (``Estate.on_site``).

Everything goes through the API as a client would (sites, the space on both sites, the S3
bucket and external target, configuration, launches, job control), except what has no API: the
agent keys (``manage.py agent_key``, as Ansible reads them) and the sweeper, run once on demand
(``manage.py shell -c``) instead of on a beat schedule so a test decides when it runs.

Every process started is stopped by its PID (SIGTERM, then SIGKILL), an agent with its whole
process tree (its queue workers put themselves in process groups of their own).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_make_run_demo import process_tree, still_running
from workflows.states import JOB_TERMINAL

ROOT = Path(__file__).resolve().parents[2]
# A Redis database of its own (the other integration tests use 13-15); queue names are unique
# per run on top of that.
REDIS_URL = "redis://127.0.0.1:6379/11"
S3_ACCESS_KEY = "e2e-access"
S3_SECRET_KEY = "e2e-secret-0123456789"
HEARTBEAT_SECONDS = "1"
# Generous: the machine running the suite may be busy with other work.
START_TIMEOUT = 120.0
JOB_TIMEOUT = 150.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(folder: Path) -> dict[str, str]:
    """``relative path -> SHA-256`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def allocated(path: Path) -> int:
    """Bytes the file occupies on disk (a stub's released blocks are not counted)."""
    return os.stat(path).st_blocks * 512


def write_files(folder: Path, count: int, *, size: int = 40_000, subdirs: int = 3, step: int = 977) -> dict[str, bytes]:
    """``count`` files of distinct content spread over ``subdirs`` subdirectories of ``folder``.

    Big enough (tens of KiB) that a stub, which keeps a block or two for its extended
    attributes, visibly occupies less than the file did."""
    files: dict[str, bytes] = {}
    for i in range(count):
        relative = f"d{i % subdirs}/f{i:04d}.bin"
        data = (f"{folder.name}-{i}-".encode() * (size // 8 + step * i // 8 + 1))[: size + step * i]
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files[relative] = data
    return files


def unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Process:
    """A process we started: its name (for messages), its ``Popen`` and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None


def spawn(name: str, argv: list[str], env: dict[str, str], log: Path) -> Process:
    """Start ``argv`` in a session (and process group) of its own, logging to ``log``."""
    with open(log, "ab") as handle:
        popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=handle,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, popen, log)


def terminate(process: Process, *, grace: float = 30.0) -> None:
    """SIGTERM to the process's group, SIGKILL if it is still there after ``grace`` seconds."""
    if not process.running():
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.popen.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.popen.wait(grace)


def kill_tree(process: Process) -> list[int]:
    """SIGKILL ``process`` and every descendant, each by its PID; the PIDs killed.

    The agent's queue and control workers move to process groups of their own (so that a
    terminal's Ctrl-C reaches the supervisor alone), so killing the supervisor's group would
    leave them running; and a worker whose supervisor dies gets SIGTERM, a warm shutdown that
    finishes the running task - not the crash this is for. So the whole tree is stopped first
    (SIGSTOP: nothing can finish or report in between), then killed.
    """
    tree = process_tree(process.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.popen.wait(30)
    deadline = time.monotonic() + 15
    while (left := still_running(tree)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes of {process.name} survived SIGKILL: {left}"
    return sorted(tree)


@contextlib.contextmanager
def frozen(process: Process) -> Iterator[None]:
    """Hold ``process`` and its descendants stopped (SIGSTOP) for the block, then let them go on
    (SIGCONT): what is sent to it meanwhile waits in the broker, whatever the machine's speed."""
    tree = process_tree(process.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


class ApiError(AssertionError):
    """The API answered with an unexpected status."""


@dataclass
class Site:
    """One site of the estate: its API row, its folder, and its running agent."""

    name: str
    id: int
    folder: Path  # what the space path shows this site's agent
    node: str
    agent: Process | None = None
    agent_key: str = ""


@dataclass
class Estate:
    """The running estate (see the module docstring). ``start`` brings it up; ``stop`` ends it."""

    tmp: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    processes: list[Process] = field(default_factory=list)
    sites: dict[str, Site] = field(default_factory=dict)
    token: str = ""
    port: int = 0  # the web server's
    moto: Process | None = None
    moto_port: int = 0
    bucket: str = ""
    target: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)

    # --- layout ---------------------------------------------------------------------------------
    @property
    def hub_queue(self) -> str:
        return f"hub-e2e-{self.run_id}"

    @property
    def mount(self) -> Path:
        """The path every agent sees as its root (a bind mount of its site's folder)."""
        return self.tmp / "mnt"

    @property
    def space_path(self) -> Path:
        return self.mount / "projects"

    def on_site(self, site: str, path: Path | str) -> Path:
        """Where ``path`` (a path as the agents and the hub see it) is in ``site``'s folder."""
        return self.sites[site].folder / Path(path).relative_to(self.mount)

    @property
    def logs(self) -> list[Path]:
        return [process.log for process in self.processes]

    def log_tails(self, chars: int = 2500) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}"
                         for log in dict.fromkeys(self.logs) if log.exists())

    # --- environments ---------------------------------------------------------------------------
    def hub_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AGENT_") and k not in ("HUB_DEMO", "CACHE_URL", "PYTEST_XDIST_WORKER")}
        env.update({
            "HUB_VAR_DIR": str(self.tmp / "hub"), "DATABASE_URL": f"sqlite:///{self.tmp / 'hub' / 'hub.sqlite3'}",
            "BROKER_URL": REDIS_URL, "CELERY_RESULT_BACKEND": "cache+memory://", "HUB_ADMIN_USER": "admin",
            "HUB_ADMIN_PASSWORD": self.password, "DJANGO_SETTINGS_MODULE": "hub.settings",
        })
        return env

    @property
    def password(self) -> str:
        path = self.tmp / "admin-password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(18))
        return path.read_text()

    def agent_env(self, site: Site, *, queues: str = "default=2") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AGENT_", "HUB_", "DJANGO_")) and k not in ("DATABASE_URL", "BROKER_URL")}
        env.update({
            "AGENT_BROKER_URL": REDIS_URL, "AGENT_HUB_QUEUE": self.hub_queue, "AGENT_KEY": site.agent_key,
            "AGENT_NODE": site.node, "AGENT_HEARTBEAT_INTERVAL": HEARTBEAT_SECONDS,
            "AGENT_STATE_DIR": str(self.tmp / f"agent-state-{site.name}"), "AGENT_POOL": "threads",
            "AGENT_QUEUES": queues, "AGENT_INVENTORY_BUDGET": "2",
        })
        return env

    # --- hub commands -----------------------------------------------------------------------------
    def manage(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.hub_env(),
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def sweep(self) -> dict[str, int]:
        """One pass of the workflow sweeper, now (what beat runs every 30 s)."""
        out = self.manage("shell", "-c", "import json\nfrom dataclasses import asdict\n"
                                         "from workflows.sweeper import sweep\nprint(json.dumps(asdict(sweep())))")
        return json.loads(out.strip().splitlines()[-1])

    # --- HTTP ---------------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None, *, expect: Iterable[int] = (200,)) -> Any:
        """``method path`` with a JSON body as the administrator; the decoded answer.

        Raises ``ApiError`` (with the answer and the processes' logs) on any other status.
        """
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        data = json.loads(raw) if raw else None
        if status not in tuple(expect):
            raise ApiError(f"{method} {path} answered {status}: {raw[:2000]!r}")
        return data

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def everything(self, path: str) -> list[dict[str, Any]]:
        """Every row of a collection (``page_size=0``)."""
        joiner = "&" if "?" in path else "?"
        return self.get(f"{path}{joiner}page_size=0")["results"]

    def poll(self, probe: Callable[[], Any], what: str, *, timeout: float = START_TIMEOUT,
             interval: float = 0.3) -> Any:
        """Call ``probe`` until it answers something true; fail with the logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = probe()
            except (urllib.error.URLError, ConnectionError, OSError) as error:
                last = error
            else:
                if last:
                    return last
            time.sleep(interval)
        pytest.fail(f"{what} not seen within {timeout:.0f}s (last: {last!r:.2000})\n{self.log_tails()}")

    # --- jobs ---------------------------------------------------------------------------------------
    def launch(self, workflow: str, site: str, paths: list[str], **extra: Any) -> dict[str, Any]:
        """``POST /api/file/workflow/``; the job as the 202 answered it."""
        return self.call("POST", "/api/file/workflow/", {"workflow": workflow, "site": site, "paths": paths, **extra},
                         expect=(202,))

    def job(self, job_id: int) -> dict[str, Any]:
        return self.get(f"/api/jobs/{job_id}/")

    def wait_job(self, job_id: int, states: Iterable[str] | None = None, *,
                 timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        """The job once it is in one of ``states`` (default: any finished state)."""
        wanted = set(states) if states is not None else set(JOB_TERMINAL)

        def probe() -> dict[str, Any] | None:
            job = self.job(job_id)
            if job["state"] in wanted:
                return job
            if states is not None and job["state"] in JOB_TERMINAL:
                pytest.fail(f"job {job_id} ended {job['state']} ({job['state_reason']}) instead of one of "
                            f"{sorted(wanted)}: {job['counts']}\n{self.log_tails()}")
            return None

        return self.poll(probe, f"job {job_id} in {sorted(wanted)}", timeout=timeout, interval=0.4)

    def files(self, job_id: int) -> dict[str, dict[str, Any]]:
        """The job's per-path results (``/api/jobs/{id}/files/``), by path."""
        return {row["path"]: row for row in self.everything(f"/api/jobs/{job_id}/files/")}

    def tasks(self, job_id: int, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{key}={value}" for key, value in {"job_id": str(job_id), **filters}.items())
        return self.everything(f"/api/tasks/?{query}")

    # --- S3 -----------------------------------------------------------------------------------------
    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.moto_port}", region_name="us-east-1",
                            aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)

    def objects(self) -> dict[str, bytes]:
        """Every object of the bucket (but the driver's probes): key -> bytes."""
        client = self.s3()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                if not item["Key"].startswith(".hub-probe"):
                    found[item["Key"]] = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
        return found

    def start_moto(self) -> None:
        """moto on ``moto_port`` (a free one the first time, the same one after an outage), with
        the bucket (a restarted moto starts empty)."""
        self.moto_port = self.moto_port or free_port()
        log = self.tmp / "moto.log"
        self.moto = spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
                          {**os.environ}, log)
        self.processes.append(self.moto)

        def answers() -> bool:
            assert self.moto is not None and self.moto.running(), self.log_tails()
            with socket.create_connection(("127.0.0.1", self.moto_port), timeout=1):
                return True

        self.poll(answers, "the moto server", timeout=60, interval=0.2)
        self.s3().create_bucket(Bucket=self.bucket)

    def stop_moto(self) -> None:
        if self.moto is not None:
            terminate(self.moto)
            self.moto = None

    # --- agents ---------------------------------------------------------------------------------------
    def start_agent(self, site: Site, *, queues: str = "default=2") -> None:
        """The site's agent, in a mount namespace where the space path shows the site's folder
        (``queues``: its ``AGENT_QUEUES``)."""
        agent = [sys.executable, "-m", "agent", "run", "--site", site.name, "--root", str(self.mount)]
        script = (f"mount --bind {shlex.quote(str(site.folder))} {shlex.quote(str(self.mount))} && "
                  f"exec {shlex.join(agent)}")
        site.agent = spawn(f"agent-{site.name}", ["unshare", "-m", "sh", "-c", script],
                           self.agent_env(site, queues=queues), self.tmp / f"agent-{site.name}.log")
        self.processes.append(site.agent)

    def node(self, site: str) -> dict[str, Any] | None:
        wanted = self.sites[site]
        rows = [n for n in self.everything("/api/nodes/") if n["site"] == wanted.name and n["name"] == wanted.node]
        return rows[0] if rows else None

    def wait_online(self, site: str, *, online: bool = True, timeout: float = START_TIMEOUT) -> None:
        def probe() -> bool:
            assert online is False or self.sites[site].agent is None or self.sites[site].agent.running(), \
                self.log_tails()
            node = self.node(site)
            return node is not None and node["online"] is online

        self.poll(probe, f"node of site {site} {'online' if online else 'offline'}", timeout=timeout)

    # --- the estate -----------------------------------------------------------------------------------
    def start(self) -> None:
        (self.tmp / "hub").mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        self.bucket = f"e2e-{self.run_id}"
        self.manage("shell", "-c", "from django.core.management import call_command\n"
                                   "call_command('migrate', interactive=False, verbosity=0)\n"
                                   "call_command('ensure_admin')\n")
        self.port = free_port()
        hub_env = self.hub_env()
        self.processes.append(spawn("hub-worker", [
            sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", self.hub_queue, "--pool", "solo",
            "--hostname", f"{self.hub_queue}@localhost", "--without-mingle", "--without-gossip",
            "--without-heartbeat", "--loglevel", "INFO"], hub_env, self.tmp / "hub-worker.log"))
        self.processes.append(spawn("web", [
            sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{self.port}"],
            hub_env, self.tmp / "web.log"))
        self.start_moto()
        self.token = self.poll(lambda: self.call("POST", "/api/auth/token/",
                                                 {"username": "admin", "password": self.password}),
                               "the web server")["access"]

        for label in ("alpha", "beta"):
            name = f"{label}-{self.run_id}"
            row = self.call("POST", "/api/sites/", {"name": name, "shortcode": f"{label[0]}{self.run_id}"},
                            expect=(201,))
            folder = self.tmp / f"site-{label}"
            folder.mkdir()
            self.sites[label] = Site(name=name, id=row["id"], folder=folder, node=f"{label}-node1")
        keys = {label: subprocess.Popen([sys.executable, "manage.py", "agent_key", site.name], cwd=ROOT,
                                        env=self.hub_env(), stdout=subprocess.PIPE, text=True)
                for label, site in self.sites.items()}
        for label, reader in keys.items():
            out, _ = reader.communicate(timeout=300)
            assert reader.returncode == 0, f"agent_key {label} failed"
            self.sites[label].agent_key = out.strip()
        for site in self.sites.values():
            self.start_agent(site)
        for label in self.sites:
            self.wait_online(label)

        self.space = self.call("POST", "/api/spaces/", {
            "name": f"projects-{self.run_id}", "mountpoint": str(self.space_path),
            "sites": [site.name for site in self.sites.values()]}, expect=(201,))
        self.target = self.call("POST", "/api/external_targets/", {
            "name": f"archive-{self.run_id}", "space": self.space["id"], "local_file_regex": ".*",
            "available_on_sites": [site.id for site in self.sites.values()],
            "bucket": {"name": self.bucket, "storage_type": "s3", "endpoint": "127.0.0.1", "port": self.moto_port,
                       "scheme": "http", "region": "us-east-1", "access_key_id": S3_ACCESS_KEY,
                       "secret_access_key": S3_SECRET_KEY,
                       # Fail fast while the target is down (the outage scenario): no retry inside
                       # botocore, a short connect timeout; the agent still retries with backoff.
                       "advanced_settings": {"max_attempts": 1, "connect_timeout": 2}}}, expect=(201,))
        target_id = self.target["id"]
        self.poll(lambda: self.get(f"/api/external_targets/{target_id}/")["is_ready"],
                  "the external target configured on both sites")
        for label in self.sites:
            assert self.on_site(label, self.space_path).is_dir(), f"the space was not created on {label}"

    def stop(self) -> None:
        """Stop every process started (agents first: they report to the hub worker), by PID, then
        remove this run's queues from Redis."""
        errors = []
        for process in sorted(self.processes, key=lambda p: not p.name.startswith("agent")):
            try:
                terminate(process)
            except Exception as error:  # noqa: BLE001 - stop the others anyway
                errors.append(f"{process.name}: {error}")
        try:
            forget_run(REDIS_URL, self.run_id)
        except Exception as error:  # noqa: BLE001 - leftovers are harmless to other runs
            errors.append(f"redis cleanup: {error}")
        assert not errors, errors


def forget_run(url: str, run_id: str) -> int:
    """Delete what a run left in Redis, and nothing else: the keys of its queues (every queue name
    holds the run id), and its entries in kombu's shared bookkeeping (a killed worker's
    unacknowledged messages, queue bindings). Returns how many keys and entries went."""
    import redis

    client = redis.Redis.from_url(url)
    removed = 0
    for key in list(client.scan_iter(match=f"*{run_id}*", count=500)):
        removed += client.delete(key)
    for tag, payload in client.hscan_iter("unacked", count=500):
        if run_id.encode() in payload:
            removed += client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    for member, _score in client.zscan_iter("_kombu.binding_deadlines", count=500):
        if run_id.encode() in member:
            removed += client.zrem("_kombu.binding_deadlines", member)
    return removed
