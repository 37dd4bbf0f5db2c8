"""What the agent benchmarks share: a moto S3 server in its own process, S3 settings that both
sides use, the machine line, sizes and the result table.

The moto server runs as a subprocess (``python -m moto.server``) on a free loopback port, so its
request handling does not compete with the measured client for this process's GIL; it is
stopped by its PID (``tests.agent.servers.stop_pid``), never by name.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.agent import servers  # noqa: E402 - after the path set-up above

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
ACCESS_KEY = "bench-access"
SECRET_KEY = "bench-secret"  # moto accepts any pair; not a credential
REGION = "us-east-1"


def parse_size(text: str) -> int:
    """``1G``, ``256M``, ``64KiB``, ``1048576`` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * 1024 ** " kmgt".index(match.group(2) or " ")


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def machine() -> str:
    """One line naming what the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import boto3
    import moto

    return (f"machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"boto3 {boto3.__version__}, moto {moto.__version__} (server in its own process)")


def check_disk(path: Path, needed: int) -> None:
    free = shutil.disk_usage(path).free
    if free < needed:
        raise SystemExit(f"error: {human(needed)} needed under {path}, only {human(free)} free (try a smaller size)")


# --- moto ------------------------------------------------------------------------------------------

@contextmanager
def moto_server(log_dir: Path) -> Iterator[servers.Server]:
    """A moto S3 server in a subprocess on loopback; stopped by PID on exit."""
    port = servers.free_port()
    log_path = log_dir / "moto.log"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = servers.Server("moto", "127.0.0.1", port, process=process, log_path=log_path)
    try:
        servers.wait_until_ready(server, servers.http_answers(f"{server.url}/moto-api/"))
        yield server
    finally:
        server.stop()


def s3_bucket(server: servers.Server, name: str, *, part_size: int, concurrency: int) -> dict[str, Any]:
    """The hub's bucket description the agent's driver is built from (``registry.open_store``)."""
    return {
        "storage_type": "s3", "name": name, "endpoint": server.host, "port": server.port, "scheme": "http",
        "region": REGION, "ssl_verify": True, "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
        "advanced_settings": {"part_size": part_size, "max_concurrency": concurrency},
    }


def baseline_client(server: servers.Server, *, pool: int) -> Any:
    """A plain boto3 client configured as the agent's S3 driver configures its own (path-style
    addressing, standard retries, checksums only when required), so only the code around the
    requests differs between the two sides."""
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=10, read_timeout=60, max_pool_connections=max(10, pool),
                    request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.client("s3", endpoint_url=server.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=config)


# --- results ---------------------------------------------------------------------------------------

@dataclass
class Measure:
    """The times of one side of one comparison, over the rounds."""

    name: str
    times: list[float]
    size: int = 0
    files: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def row(self) -> list[str]:
        t = self.median
        cells = [self.name, f"{t:.2f} s", ", ".join(f"{x:.2f}" for x in self.times)]
        cells.append(f"{self.size / MiB / t:.0f} MiB/s" if self.size else "")
        cells.append(f"{self.files / t:.0f} files/s" if self.files else "")
        return cells


def print_table(measures: Sequence[Measure]) -> None:
    header = ["run", "median", "rounds (s)", "throughput", "rate"]
    rows = [header, *[m.row() for m in measures]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + line + "|")


def ratio_line(label: str, ours: Measure, baseline: Measure, goal: float | None) -> bool:
    """Print ``ours / baseline`` against the goal; True when the goal is met (or there is none)."""
    ratio = ours.median / baseline.median
    # Each round's own ratio too: the two sides of a round ran minutes apart at most, so on a
    # machine whose speed drifts these show the spread the medians hide.
    paired = ""
    if len(ours.times) > 1 and len(ours.times) == len(baseline.times):
        rounds = zip(ours.times, baseline.times, strict=True)
        paired = " [per round: " + ", ".join(f"{a / b:.2f}" for a, b in rounds) + "]"
    if goal is None:
        print(f"ratio {label}: {ratio:.2f}x ({ours.name} / {baseline.name}; no goal, reported){paired}")
        return True
    met = ratio <= goal
    verdict = "goal met" if met else "MISSED GOAL"
    print(f"ratio {label}: {ratio:.2f}x (goal <= {goal}x) {verdict}{paired}")
    return met
