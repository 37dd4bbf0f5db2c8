"""The agent package imports nothing from Django or the hub's apps (STYLE: dependency direction)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]


def test_agent_imports_without_django_settings_or_hub_modules():
    """Every agent module imports in a process where Django cannot be imported at all.

    An agent host has no Django installed; here the venv has it, so an import hook makes it
    unimportable (libraries that merely *try* Django, as kombu's JSON encoder does, carry on).
    """
    code = (
        "import sys, pkgutil, importlib.abc\n"
        "class NoDjango(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'django':\n"
        "            raise ImportError('django is not installed on agent hosts')\n"
        "        return None\n"
        "sys.meta_path.insert(0, NoDjango())\n"
        "import agent\n"
        "for info in pkgutil.walk_packages(agent.__path__, 'agent.'):\n"
        "    importlib.import_module(info.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'hub', 'sites', 'workflows'})\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
