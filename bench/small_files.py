"""Many small files (default 10 000 of 1-64 KiB) to a folder target and to S3 (moto server) and
back: the agent's batch actions against ``cp -a`` and a plain boto3 thread-pool script.

Ours: ``agent.actions.migrate(ctx, paths, target=..., premigrate=True)`` (the tree stays intact
for the baselines) with an ``ActionContext`` whose ``open_target`` builds the folder (``fs``) or
S3 driver through ``registry.open_store``. To the folder target the files go through the
small-file lane (``agent.lane``, ``--lane-workers`` processes, the agent's default): per file
read, hash, write the object (temporary file, metadata xattr, ``link``), then per group of 256
one ``syncfs`` of the target, a check of each object and of the file, and the record; one
``syncfs`` of the space before the batch reports. To S3 (the general path) each file is one
``PutObject`` with ``If-None-Match``, verified by its MD5 ETag, then recorded.
Recall: a copy of the tree is migrated to stubs (``premigrate=False``, untimed), then timed:
``agent.actions.recall(ctx, paths)`` (download in place, hash, compare, fsync, flip the state).

Baselines: ``cp -a`` of the tree (and of the target's copy back); a thread pool of the same size
as the agent's (``--concurrency``) doing ``put_object`` of each file with one boto3 client
configured as the driver configures its own, and ``get_object`` of each back into a new tree.
Both sides' timings include walking the tree for the file list. Every copy is compared with the
source tree's SHA-256 manifest afterwards (untimed).

Each round runs on a fresh moto server, target folder and stub copies, alternating which side
goes first; a warm-up tree (a tenth of the files, at most 200) goes through every operation first,
uncounted; dirty pages are flushed (``sync``) before each timed step so one side's writeback does
not land on the other.

    .venv/bin/python bench/small_files.py --files 10000
    .venv/bin/python bench/small_files.py --files 10000 --folder-only --workdir /dev/shm   # no disk
    .venv/bin/python bench/small_files.py --quick
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - bench/ is not a package
    KiB,
    Measure,
    MiB,
    baseline_client,
    check_disk,
    human,
    machine,
    moto_server,
    print_table,
    ratio_line,
    s3_bucket,
)

from agent import actions  # noqa: E402
from agent.drivers.base import ObjectStore  # noqa: E402
from agent.drivers.registry import open_store  # noqa: E402
from agent.hsm.state import XATTR_NAME  # noqa: E402

FOLDER_GOAL = 1.5
S3_GOAL = 1.3
FILES_PER_DIR = 100
WARM_UP_FILES = 200  # at most; a tenth of the tree for small runs


def make_tree(root: Path, count: int, *, seed: int, low: int, high: int) -> int:
    """``count`` files of seeded random sizes in ``[low, high]`` and random bytes, 100 per
    directory; returns the total size."""
    rng = random.Random(seed)
    total = 0
    for index in range(count):
        folder = root / f"d{index // FILES_PER_DIR:04d}"
        if index % FILES_PER_DIR == 0:
            folder.mkdir(parents=True)
        size = rng.randint(low, high)
        (folder / f"f{index:06d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return total


def files_under(root: Path) -> list[Path]:
    """Every regular file below ``root``, in a stable order (the "listing" both sides do)."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        found.extend(Path(folder) / name for name in sorted(names))
    return found


def manifest(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files_under(root)}


def unmanage_tree(root: Path) -> None:
    """Forget the HSM records of a premigrated tree, so it can be migrated afresh."""
    for path in files_under(root):
        try:
            os.removexattr(path, XATTR_NAME)
        except OSError:
            pass


def expect_all(outcomes: list[Any], status: str, what: str) -> None:
    counts = Counter(o["status"] for o in outcomes)
    if counts != Counter({status: len(outcomes)}):
        bad = [o for o in outcomes if o["status"] != status][:3]
        raise RuntimeError(f"{what}: {dict(counts)}; e.g. {bad}")


def timed(run: Callable[[], object]) -> float:
    os.sync()  # the previous step's writeback is not charged to this one
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


class Round:
    """One fresh set of targets (moto server, buckets, folder) and the operations timed on it."""

    def __init__(self, server: Any, work: Path, space: Path, *, concurrency: int, lane_workers: int | None) -> None:
        self.server, self.work, self.space, self.concurrency = server, work, space, concurrency
        self.lane_workers = lane_workers
        self.folder = work / "target-folder"
        self.folder.mkdir()
        self.client = baseline_client(server, pool=concurrency)
        for bucket in ("bench-agent", "bench-baseline"):
            self.client.create_bucket(Bucket=bucket)

    def open_target(self, name: str) -> ObjectStore:
        """The ``ActionContext.open_target`` the agent's config would provide."""
        if name == "folder":
            return open_store({"storage_type": "fs", "migration_target_folder": str(self.folder)})
        if name == "s3":
            return open_store(s3_bucket(self.server, "bench-agent", part_size=8 * MiB, concurrency=4))
        raise KeyError(name)

    def context(self) -> actions.ActionContext:
        return actions.ActionContext(roots=[self.space], open_target=self.open_target,
                                     concurrency=self.concurrency, lane_workers=self.lane_workers)

    # --- ours ---------------------------------------------------------------------------------------
    def agent_migrate(self, tree: Path, target: str, *, premigrate: bool = True) -> None:
        paths = [{"path": str(path)} for path in files_under(tree)]
        outcomes = actions.migrate(self.context(), paths, target=target, premigrate=premigrate)
        expect_all(outcomes, "processed", f"agent migrate to {target}")

    def agent_recall(self, tree: Path) -> None:
        paths = [{"path": str(path)} for path in files_under(tree)]
        expect_all(actions.recall(self.context(), paths), "processed", "agent recall")

    # --- baselines ----------------------------------------------------------------------------------
    @staticmethod
    def cp_a(source: Path, dest: Path) -> None:
        subprocess.run(["cp", "-a", str(source), str(dest)], check=True)

    @staticmethod
    def cp_a_sync(source: Path, dest: Path) -> None:
        """``cp -a`` then ``sync``: a durable copy, like for like with what the agent guarantees
        (its objects and records are on disk before it reports)."""
        subprocess.run(["cp", "-a", str(source), str(dest)], check=True)
        subprocess.run(["sync"], check=True)

    def boto3_put(self, tree: Path, prefix: str) -> None:
        def put(path: Path) -> None:
            key = f"{prefix}/{path.relative_to(tree)}"
            self.client.put_object(Bucket="bench-baseline", Key=key, Body=path.read_bytes())

        with ThreadPoolExecutor(self.concurrency) as pool:
            for _ in pool.map(put, files_under(tree)):
                pass

    def boto3_get(self, tree: Path, prefix: str, dest: Path) -> None:
        """Each file of ``tree`` (the key list) from the baseline bucket into ``dest``."""

        def get(path: Path) -> None:
            rel = path.relative_to(tree)
            body = self.client.get_object(Bucket="bench-baseline", Key=f"{prefix}/{rel}")["Body"].read()
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(body)

        with ThreadPoolExecutor(self.concurrency) as pool:
            for _ in pool.map(get, files_under(tree)):
                pass

    def close(self) -> None:
        self.client.close()


def measure_round(rnd: Round, src: Path, tag: str, *, agent_first: bool, s3: bool = True) -> dict[str, float]:
    """Every timed step once on ``src`` (a tree under the space); returns seconds per step.
    ``s3`` false: the folder steps only."""
    space, work = rnd.space, rnd.work
    out: dict[str, float] = {}

    def pair(ours: tuple[str, Callable[[], object]], base: tuple[str, Callable[[], object]]) -> None:
        for name, run in (ours, base) if agent_first else (base, ours):
            out[name] = timed(run)

    # migrate: premigrate, so the same unmanaged tree serves both sides
    pair(("folder agent", lambda: rnd.agent_migrate(src, "folder")),
         ("folder cp", lambda: rnd.cp_a(src, work / f"cp-{tag}")))
    out["folder cp sync"] = timed(lambda: rnd.cp_a_sync(src, work / f"cp-sync-{tag}"))
    shutil.rmtree(work / f"cp-sync-{tag}")
    unmanage_tree(src)
    if s3:
        pair(("s3 agent", lambda: rnd.agent_migrate(src, "s3")),
             ("s3 boto3", lambda: rnd.boto3_put(src, tag)))
        unmanage_tree(src)
    # recall: stubs of copies of the tree (made untimed), against copying the data back
    stubs_fs, stubs_s3 = space / f"stubs-fs-{tag}", space / f"stubs-s3-{tag}"
    rnd.cp_a(src, stubs_fs)
    rnd.agent_migrate(stubs_fs, "folder", premigrate=False)
    if s3:
        rnd.cp_a(src, stubs_s3)
        rnd.agent_migrate(stubs_s3, "s3", premigrate=False)
    pair(("folder recall agent", lambda: rnd.agent_recall(stubs_fs)),
         ("folder recall cp", lambda: rnd.cp_a(rnd.folder / stubs_fs.name, work / f"cp-back-{tag}")))
    if s3:
        pair(("s3 recall agent", lambda: rnd.agent_recall(stubs_s3)),
             ("s3 recall boto3", lambda: rnd.boto3_get(src, tag, work / f"get-back-{tag}")))
    # every copy holds the source's bytes
    want = manifest(src)
    copies = [work / f"cp-{tag}", stubs_fs, work / f"cp-back-{tag}"]
    if s3:
        copies += [stubs_s3, work / f"get-back-{tag}"]
    for copy in copies:
        if manifest(copy) != want:
            raise RuntimeError(f"{copy} differs from the source tree")
        shutil.rmtree(copy)
    return out


def run(args: argparse.Namespace, workdir: Path) -> bool:
    print(machine())
    print(f"tree: {args.files} files of {human(args.min_size)}-{human(args.max_size)} (seed {args.seed}), "
          f"{FILES_PER_DIR} per directory; concurrency {args.concurrency} (agent's pool and the boto3 pool); "
          f"small-file lane: {args.lane_workers} worker process(es) (-1: off); "
          f"{args.rounds} round(s), median reported; warm-up excluded")
    space = workdir / "space"
    (space / "src").parent.mkdir()
    check_disk(workdir, 8 * args.files * args.max_size + 256 * MiB)
    started = time.perf_counter()
    total = make_tree(space / "src", args.files, seed=args.seed, low=args.min_size, high=args.max_size)
    make_tree(space / "warm", min(WARM_UP_FILES, max(10, args.files // 10)), seed=args.seed + 1, low=args.min_size,
              high=args.max_size)
    print(f"data ready: {human(total)} in {args.files} files ({time.perf_counter() - started:.1f} s)")
    times: dict[str, list[float]] = {}
    for round_no in range(args.rounds):
        round_dir = workdir / f"round-{round_no}"
        round_dir.mkdir()
        with moto_server(round_dir) as server:
            rnd = Round(server, round_dir, space, concurrency=args.concurrency,
                        lane_workers=None if args.lane_workers < 0 else args.lane_workers)
            try:
                if round_no == 0:
                    measure_round(rnd, space / "warm", "warm", agent_first=True, s3=not args.folder_only)
                result = measure_round(rnd, space / "src", f"r{round_no}", agent_first=round_no % 2 == 1,
                                       s3=not args.folder_only)
            finally:
                rnd.close()
        shutil.rmtree(round_dir)
        print(f"  round {round_no + 1}: " + ", ".join(f"{name} {t:.2f} s" for name, t in result.items()))
        for name, seconds in result.items():
            times.setdefault(name, []).append(seconds)

    def m(name: str, label: str) -> Measure:
        return Measure(label, times[name], size=total, files=args.files)

    labels = {
        "folder agent": "agent migrate -> folder (premigrate)",
        "folder cp": "cp -a (baseline)",
        "folder cp sync": "cp -a + sync (durable baseline)",
        "s3 agent": "agent migrate -> S3 (premigrate)",
        "s3 boto3": "boto3 thread-pool put_object (baseline)",
        "folder recall agent": "agent recall <- folder",
        "folder recall cp": "cp -a back (baseline)",
        "s3 recall agent": "agent recall <- S3",
        "s3 recall boto3": "boto3 thread-pool get_object (baseline)",
    }
    rows = {name: m(name, label) for name, label in labels.items() if name in times}
    print()
    print_table(list(rows.values()))
    print()
    met = ratio_line("migrate to folder vs cp -a", rows["folder agent"], rows["folder cp"], FOLDER_GOAL)
    ratio_line("migrate to folder vs cp -a + sync (durable, like for like)", rows["folder agent"],
               rows["folder cp sync"], FOLDER_GOAL)
    if "s3 agent" in rows:
        met = ratio_line("migrate to S3 vs boto3 put_object pool", rows["s3 agent"], rows["s3 boto3"],
                         S3_GOAL) and met
    ratio_line("recall from folder vs cp -a back", rows["folder recall agent"], rows["folder recall cp"], None)
    if "s3 agent" in rows:
        ratio_line("recall from S3 vs boto3 get_object pool", rows["s3 recall agent"], rows["s3 recall boto3"],
                   None)
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="number of files (default 10000)")
    parser.add_argument("--min-size", type=int, default=1 * KiB, help="smallest file in bytes (default 1 KiB)")
    parser.add_argument("--max-size", type=int, default=64 * KiB, help="largest file in bytes (default 64 KiB)")
    parser.add_argument("--seed", type=int, default=4, help="seed of the sizes and bytes (default 4)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="agent batch threads and baseline pool threads (default 8, the agent's default)")
    parser.add_argument("--lane-workers", type=int, default=2 * (os.cpu_count() or 1),
                        help="processes of the small-file lane, as the agent's small_file_workers (default: twice "
                             "the CPU count, its default; 0: on the calling thread; -1: no lane, the general path)")
    parser.add_argument("--rounds", type=int, default=1, help="measured rounds (default 1)")
    parser.add_argument("--quick", action="store_true", help="a fast sanity run: 100 files, one round")
    parser.add_argument("--folder-only", action="store_true", help="the folder target and cp -a only (no S3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the data (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.files, args.rounds = 100, 1
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-small-", dir=args.workdir))
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
