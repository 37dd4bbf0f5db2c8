"""Settings from the environment fail fast with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from hub.env import env_bool, env_int, env_list, env_rate, read_or_create_secret

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]


def test_booleans_are_strict(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG", False)
    monkeypatch.delenv("X_FLAG")
    assert env_bool("X_FLAG", True) is True


def test_integers_are_checked_against_their_range(monkeypatch):
    monkeypatch.setenv("X_NUM", "80s")
    with pytest.raises(ImproperlyConfigured, match="X_NUM"):
        env_int("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "5")
    with pytest.raises(ImproperlyConfigured, match="minimum"):
        env_int("X_NUM", 1, minimum=10)
    monkeypatch.setenv("X_NUM", "")
    assert env_int("X_NUM", 7) == 7


def test_lists_and_rates(monkeypatch):
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    assert env_list("X_LIST", []) == ["a.example", "b.example"]
    monkeypatch.setenv("X_RATE", "100/min")
    assert env_rate("X_RATE", None) == "100/min"
    monkeypatch.setenv("X_RATE", "none")
    assert env_rate("X_RATE", "1/s") is None
    monkeypatch.setenv("X_RATE", "lots")
    with pytest.raises(ImproperlyConfigured, match="X_RATE"):
        env_rate("X_RATE", None)


def test_secret_is_generated_once_and_kept(tmp_path):
    path = tmp_path / "nested" / "secret"
    first = read_or_create_secret(path)
    assert len(first) > 40 and read_or_create_secret(path) == first
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("variable, value, message", [
    ("DEBUG", "maybe", "DEBUG"),
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
    ("DATABASE_URL", "nonsense", "DATABASE_URL"),
    ("BROKER_URL", "sqs://queue", "BROKER_URL"),
    ("JWT_ACCESS_LIFETIME", "an hour", "JWT_ACCESS_LIFETIME"),
    ("THROTTLE_USER", "fast", "THROTTLE_USER"),
    ("JWT_PRIVATE_KEY", "/no/such/key.pem", "JWT_PRIVATE_KEY"),
    ("CACHE_URL", "memcached://x", "CACHE_URL"),
])
def test_bad_settings_stop_start_up_with_a_clear_message(tmp_path, variable, value, message):
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path), variable: value}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_jwt_key_pair_from_the_environment_is_used(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    key_file = tmp_path / "jwt.pem"
    key_file.write_bytes(pem)
    code = "from django.conf import settings; print(settings.JWT_PUBLIC_KEY)"
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path / "var"), "JWT_PRIVATE_KEY": str(key_file),
           "DJANGO_SETTINGS_MODULE": "hub.settings"}
    result = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    expected = key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected.strip()
    assert not (tmp_path / "var" / "jwt_private.pem").exists()
