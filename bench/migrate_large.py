"""One large file to S3 (moto server) and back: the agent's migrate/recall against boto3's own
``upload_file``/``download_file`` with the same multipart part size and concurrency.

Ours: ``PosixFilesystem.migrate(premigrate=True)`` into the S3 driver built by
``registry.open_store`` - which reads the file once to hash it, streams it up while hashing again,
checks the remote size and recorded SHA-256, checks the file did not change, and records the
state in an xattr (fsynced). Then, untimed, the file is released to a stub and timed again:
``PosixFilesystem.recall`` (download in place, hash, compare, fsync, flip the state).
Baseline: a boto3 client with the driver's settings, ``upload_file`` then ``download_file`` with
the same ``TransferConfig``, and a single streamed ``get_object`` into a file (the agent's recall
reads one GET stream; moto answers each ranged GET of ``download_file`` by reading the whole
object, which makes that baseline slow there). Each side's result is checked against the file's
SHA-256 (untimed). The agent's recall also hashes and fsyncs the file; the baselines do not, so
the streamed GET is also shown with an ``fsync`` (same durability, still no checksum).

Rounds alternate which side goes first; a warm-up transfer on each side is not counted; dirty
pages are flushed (``sync``) before each timed step; every object is deleted after its round so
moto's memory stays flat.

    .venv/bin/python bench/migrate_large.py --size 1G
    .venv/bin/python bench/migrate_large.py --quick
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - bench/ is not a package
    GiB,
    Measure,
    MiB,
    baseline_client,
    check_disk,
    human,
    machine,
    moto_server,
    parse_size,
    print_table,
    ratio_line,
    s3_bucket,
)
from boto3.s3.transfer import TransferConfig  # noqa: E402

from agent.drivers.posix import PosixFilesystem, ResultStatus  # noqa: E402
from agent.drivers.registry import open_store  # noqa: E402
from agent.hsm.state import clear_record  # noqa: E402

MIGRATE_GOAL = 1.1
BUCKET = "bench-large"


def make_file(path: Path, size: int) -> str:
    """Random (incompressible) bytes; returns their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(8 * MiB, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def start() -> float:
    """Flush dirty pages first (moto's spooled parts, the last download), so one step's writeback
    is not charged to the next; then the clock starts."""
    os.sync()
    return time.perf_counter()


def unmanage(path: Path) -> None:
    """Forget the HSM record so the next round migrates the file afresh."""
    fd = os.open(path, os.O_RDONLY)
    try:
        clear_record(fd)
    finally:
        os.close(fd)


class Sides:
    """The two ways of moving the file, each returning (upload seconds, download seconds)."""

    def __init__(self, server: Any, space: Path, *, part_size: int, concurrency: int) -> None:
        self.space = space
        self.store = open_store(s3_bucket(server, BUCKET, part_size=part_size, concurrency=concurrency))
        self.fs = PosixFilesystem([space])
        self.client = baseline_client(server, pool=concurrency * 2)
        self.client.create_bucket(Bucket=BUCKET)
        self.transfer_config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                                              max_concurrency=concurrency)

    def agent(self, path: Path, sha: str) -> tuple[float, float]:
        started = start()
        result = self.fs.migrate(path, self.store, premigrate=True, target="bench")
        uploaded = time.perf_counter() - started
        if result.status != ResultStatus.PROCESSED or result.key is None:
            raise RuntimeError(f"agent migrate: {result}")
        released = self.fs.release(path, self.store, verify_content=False)  # untimed: make the stub
        if released.status != ResultStatus.PROCESSED or os.stat(path).st_blocks * 512 > MiB:
            raise RuntimeError(f"agent release: {released}")
        started = start()
        recalled = self.fs.recall(path, self.store)
        downloaded = time.perf_counter() - started
        if recalled.status != ResultStatus.PROCESSED or sha256_of(path) != sha:
            raise RuntimeError(f"agent recall: {recalled}, or the recalled bytes differ")
        unmanage(path)
        self.store.delete(result.key)
        return uploaded, downloaded

    def baseline(self, path: Path, sha: str) -> tuple[float, float, float, float]:
        """upload_file, then the object back twice: ``download_file`` (ranged GETs in parallel)
        and one streamed ``get_object`` (a single GET, as the agent's recall reads), whose
        ``fsync`` is timed apart (the agent's recall makes its bytes durable; these do not)."""
        key = f"baseline/{path.name}"
        copy = path.with_name(path.name + ".download")
        started = start()
        self.client.upload_file(str(path), BUCKET, key, Config=self.transfer_config)
        uploaded = time.perf_counter() - started
        started = start()
        self.client.download_file(BUCKET, key, str(copy), Config=self.transfer_config)
        ranged = time.perf_counter() - started
        if sha256_of(copy) != sha:
            raise RuntimeError("baseline download_file differs from the file")
        copy.unlink()
        started = start()
        body = self.client.get_object(Bucket=BUCKET, Key=key)["Body"]
        with open(copy, "wb") as out:
            for chunk in body.iter_chunks(8 * MiB):
                out.write(chunk)
            out.flush()
            streamed = time.perf_counter() - started
            os.fsync(out.fileno())
            synced = time.perf_counter() - started
        if sha256_of(copy) != sha:
            raise RuntimeError("baseline get_object differs from the file")
        copy.unlink()
        self.client.delete_object(Bucket=BUCKET, Key=key)
        return uploaded, ranged, streamed, synced

    def close(self) -> None:
        self.store.close()
        self.client.close()


def run(args: argparse.Namespace, workdir: Path) -> bool:
    size, part, conc = args.size, args.part_size, args.concurrency
    print(machine())
    print(f"file: {human(size)} random bytes; part size {human(part)}, concurrency {conc} (both sides); "
          f"{args.rounds} round(s), median reported; warm-up excluded")
    space = workdir / "space"
    space.mkdir()
    check_disk(workdir, 2 * size + 256 * MiB)
    path = space / "large.bin"
    started = time.perf_counter()
    sha = make_file(path, size)
    warm = space / "warm-up.bin"
    warm_sha = make_file(warm, 2 * part + 1)
    print(f"data ready ({time.perf_counter() - started:.1f} s)")
    with moto_server(workdir) as server:
        sides = Sides(server, space, part_size=part, concurrency=conc)
        try:
            sides.baseline(warm, warm_sha)
            sides.agent(warm, warm_sha)
            times: dict[str, list[float]] = {name: [] for name in ("agent up", "agent down", "base up",
                                                                    "base ranged", "base streamed", "base synced")}
            for round_no in range(args.rounds):
                order = ("agent", "base") if round_no % 2 == 0 else ("base", "agent")
                for side in order:
                    if side == "agent":
                        up, down = sides.agent(path, sha)
                        times["agent up"].append(up)
                        times["agent down"].append(down)
                        print(f"  round {round_no + 1}: agent    migrate {up:6.2f} s  recall {down:6.2f} s")
                    else:
                        up, ranged, streamed, synced = sides.baseline(path, sha)
                        times["base up"].append(up)
                        times["base ranged"].append(ranged)
                        times["base streamed"].append(streamed)
                        times["base synced"].append(synced)
                        print(f"  round {round_no + 1}: baseline upload  {up:6.2f} s  download_file {ranged:6.2f} s"
                              f"  get_object {streamed:6.2f} s (+ fsync {synced:6.2f} s)")
        finally:
            sides.close()
    ours_up = Measure("agent migrate (premigrate)", times["agent up"], size=size)
    base_up = Measure("boto3 upload_file (baseline)", times["base up"], size=size)
    ours_down = Measure("agent recall", times["agent down"], size=size)
    base_ranged = Measure("boto3 download_file (baseline)", times["base ranged"], size=size)
    base_streamed = Measure("boto3 get_object stream (baseline)", times["base streamed"], size=size)
    base_synced = Measure("boto3 get_object stream + fsync", times["base synced"], size=size)
    print()
    print_table([ours_up, base_up, ours_down, base_ranged, base_streamed, base_synced])
    print()
    met = ratio_line("migrate vs upload_file", ours_up, base_up, MIGRATE_GOAL)
    ratio_line("recall vs download_file", ours_down, base_ranged, None)
    ratio_line("recall vs get_object stream", ours_down, base_streamed, None)
    ratio_line("recall vs get_object stream + fsync", ours_down, base_synced, None)
    if base_ranged.median > 2 * base_streamed.median:
        print("note: download_file's ranged GETs are slow on moto, which reads the whole object for every range "
              "request; the single-GET get_object baseline is the like-for-like one")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=1 * GiB, help="file size (e.g. 1G, 256M; default 1G)")
    parser.add_argument("--part-size", type=parse_size, default=8 * MiB, help="multipart part size (default 8M)")
    parser.add_argument("--concurrency", type=int, default=4, help="parts in flight (default 4, the driver's)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side (default 5)")
    parser.add_argument("--quick", action="store_true", help="a fast sanity run: 48 MiB, one round")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the data (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.rounds = 48 * MiB, 1
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-large-", dir=args.workdir))
    try:
        met = run(args, workdir)
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not met:
        print("MISSED GOAL (reported above; not an error)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
