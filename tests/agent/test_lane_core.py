"""Loading the small-file lane's C core (``agent.native``): it is optional, and where it is
missing, switched off or cannot serve a target the lane keeps to its Python loop. (What the core
writes is tested with the lane itself, in ``test_small_file_lane.py``, on both loops.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent import actions, native
from agent.drivers.fs import FolderStore
from agent.hsm.state import HsmState, read_record
from tests.agent.hsm_fixtures import sha256_file, write_random
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def _loads(env: dict[str, str]) -> str:
    code = "from agent import native; print(native.core() is not None)"
    inherited = {name: value for name, value in os.environ.items() if name != native.ENV_SWITCH}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**inherited, **env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.strip()


def test_the_core_loads_where_it_is_built_and_not_when_switched_off():
    require(native.LIBRARY.exists(), "the lane's C core is not built (make native)")
    assert _loads({}) == "True"
    assert _loads({native.ENV_SWITCH: "0"}) == "False"


def test_without_the_library_there_is_no_core(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "LIBRARY", tmp_path / "missing.so")
    native.core.cache_clear()
    try:
        assert native.core() is None
    finally:
        native.core.cache_clear()


def test_a_library_from_another_version_is_not_used(monkeypatch, tmp_path):
    require(native.LIBRARY.exists(), "the lane's C core is not built (make native)")
    monkeypatch.setattr(native, "ABI_VERSION", native.ABI_VERSION + 1)
    native.core.cache_clear()
    try:
        assert native.core() is None
    finally:
        native.core.cache_clear()


def test_a_target_whose_name_the_record_template_cannot_hold_takes_the_python_loop(tmp_path):
    core = native.core()
    require(core is not None, "the lane's C core is not built (make native)")
    assert not core.can_record("LaneCoreKeySentinel", True)
    space, target = tmp_path / "space", tmp_path / "target"
    target.mkdir()
    files = [write_random(space / f"{i}.bin", 100 * i, seed=i) for i in range(5)]
    ctx = actions.ActionContext(roots=[space], open_target=lambda name: FolderStore(target), chunk_size=65536)
    out = actions.migrate(ctx, [{"path": str(f)} for f in files], target="LaneCoreKeySentinel", premigrate=True)
    assert [o["status"] for o in out] == ["processed"] * 5
    for f, o in zip(files, out, strict=True):
        record = read_record(f)
        assert (record.state, record.target, record.key) == (HsmState.PREMIGRATED, "LaneCoreKeySentinel", o["key"])
        assert sha256_file(target / o["key"]) == sha256_file(f) == record.sha256
