"""The RSA key pair that signs the hub's JSON web tokens.

Tokens are RS256 so that sites, agents and other services can verify them with the public key
alone (served at /api/auth/token/publickey/) without ever holding a secret that could mint them.
The pair comes from JWT_PRIVATE_KEY / JWT_PUBLIC_KEY (PEM text or a path to a PEM file) or is
generated once under the var/ folder and reused on every later start.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured

from hub.env import write_once


def _pem_from_env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if value.startswith("-----BEGIN"):
        return value.replace("\\n", "\n")
    path = Path(value)
    if not path.is_file():
        raise ImproperlyConfigured(f"{name} is neither PEM text nor a readable file: {value!r}")
    return path.read_text()


def _public_from_private(private_pem: str, source: str) -> str:
    try:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{source} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(f"{source} must be an RSA key for RS256 signing")
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _generate_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_signing_keys(var_dir: Path) -> tuple[str, str]:
    """Return ``(private_pem, public_pem)`` from the environment or the var/ folder."""
    private_pem = _pem_from_env("JWT_PRIVATE_KEY")
    if private_pem is not None:
        public_pem = _pem_from_env("JWT_PUBLIC_KEY") or _public_from_private(private_pem, "JWT_PRIVATE_KEY")
        derived = _public_from_private(private_pem, "JWT_PRIVATE_KEY")
        if derived.strip() != public_pem.strip():
            raise ImproperlyConfigured("JWT_PUBLIC_KEY does not match JWT_PRIVATE_KEY")
        return private_pem, public_pem

    path = var_dir / "jwt_private.pem"
    private_pem = write_once(path, _generate_private_pem)
    return private_pem, _public_from_private(private_pem, str(path))
