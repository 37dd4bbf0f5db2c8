"""The registry builds drivers by storage type and imports a cloud SDK only for its own driver
(STYLE habit 14: an agent loads only the SDK it uses). Checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.drivers.base import PermanentError
from agent.drivers.registry import DRIVERS, driver_class, open_store

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]
SDKS = ("boto3", "botocore", "s3transfer", "azure", "google")


def sdks_loaded_after(code: str, tmp_path: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the cloud SDK packages it imported."""
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({SDKS!r}))))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_drivers_package_imports_no_cloud_sdk(tmp_path):
    assert sdks_loaded_after("import agent.drivers, agent.drivers.registry, agent.drivers.base", tmp_path) == []


def test_memory_and_folder_stores_import_no_cloud_sdk(tmp_path):
    code = (
        "import io\n"
        "from agent.drivers.registry import open_store\n"
        "for bucket in ({'storage_type': 'memory'},\n"
        f"               {{'storage_type': 'fs', 'migration_target_folder': {str(tmp_path)!r}}}):\n"
        "    store = open_store(bucket)\n"
        "    store.put('k', io.BytesIO(b'x'))\n"
        "    assert store.list().objects[0].key == 'k'\n"
    )
    assert sdks_loaded_after(code, tmp_path) == []


@pytest.mark.parametrize(("bucket", "expected"), [
    ({"storage_type": "s3", "name": "b", "endpoint": "127.0.0.1", "port": 9, "scheme": "http"},
     ["boto3", "botocore", "s3transfer"]),
    ({"storage_type": "azure", "storage_account": "acct", "container": "c"}, ["azure"]),
    ({"storage_type": "gcs", "name": "b", "advanced_settings": {"anonymous": True}}, ["google"]),
])
def test_each_cloud_driver_imports_only_its_own_sdk(tmp_path, bucket, expected):
    code = f"from agent.drivers.registry import open_store\nopen_store({bucket!r})\n"
    assert sdks_loaded_after(code, tmp_path) == expected


def test_every_storage_type_has_a_driver_class():
    for storage_type in DRIVERS:
        assert driver_class(storage_type).storage_type == storage_type


def test_an_unknown_storage_type_is_a_permanent_error():
    with pytest.raises(PermanentError):
        open_store({"storage_type": "tape"})
    with pytest.raises(PermanentError):
        open_store({})
