"""RS256 tokens: obtain, refresh, verify, public key; every way a token can be wrong is refused."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from hub.models import AuditEvent
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def me_status(token: str) -> int:
    return bearer(token).get(reverse("my-permissions")).status_code


@pytest.fixture
def user(db):
    return UserFactory(username="tokenuser")


def obtain(anon, username="tokenuser", password=PASSWORD):
    return anon.post(reverse("token-obtain"), {"username": username, "password": password}, format="json")


def test_obtain_returns_access_and_refresh_that_work(anon, user):
    response = obtain(anon)
    assert response.status_code == 200
    tokens = response.json()
    assert me_status(tokens["access"]) == 200
    header = jwt.get_unverified_header(tokens["access"])
    assert header["alg"] == "RS256"
    claims = jwt.decode(tokens["access"], options={"verify_signature": False})
    # exp and iat come from two clock readings, which may straddle a second boundary.
    assert abs(claims["exp"] - claims["iat"] - 3600) <= 1
    refresh_claims = jwt.decode(tokens["refresh"], options={"verify_signature": False})
    assert abs(refresh_claims["exp"] - refresh_claims["iat"] - 86400) <= 1
    assert AuditEvent.objects.filter(action="login", username="tokenuser").exists()


def test_wrong_password_is_401_and_audited(anon, user):
    assert obtain(anon, password="wrong").status_code == 401
    assert AuditEvent.objects.filter(action="login_failed", username="tokenuser").exists()


def test_missing_fields_are_400(anon):
    response = anon.post(reverse("token-obtain"), {}, format="json")
    assert response.status_code == 400
    assert {"username", "password"} <= set(response.json())


def test_public_key_verifies_a_token_with_pyjwt(anon, user):
    pem = anon.get(reverse("token-publickey"))
    assert pem.status_code == 200
    assert pem.content.startswith(b"-----BEGIN PUBLIC KEY-----")
    access = obtain(anon).json()["access"]
    claims = jwt.decode(access, pem.content, algorithms=["RS256"])
    assert claims["user_id"] == str(user.pk) and claims["token_type"] == "access"


def test_expired_access_token_is_refused(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-1))
    assert me_status(str(token)) == 401


def test_token_signed_by_another_key_is_refused(user):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    genuine = jwt.decode(str(AccessToken.for_user(user)), options={"verify_signature": False})
    forged = jwt.encode(genuine, pem, algorithm="RS256")
    assert me_status(forged) == 401


def test_alg_none_token_is_refused(user):
    claims = jwt.decode(str(AccessToken.for_user(user)), options={"verify_signature": False})

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert me_status(unsigned) == 401


def test_hs256_token_keyed_with_the_public_key_is_refused(user):
    """The classic algorithm-confusion attack: HMAC signed with the (public) verifying key."""
    claims = jwt.decode(str(AccessToken.for_user(user)), options={"verify_signature": False})
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signature = hmac.new(settings.JWT_PUBLIC_KEY.encode(), header + b"." + body, hashlib.sha256).digest()
    token = b".".join([header, body, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()
    assert me_status(token) == 401


def test_refresh_token_used_as_access_is_refused(user):
    assert me_status(str(RefreshToken.for_user(user))) == 401


def test_inactive_user_token_is_refused(user):
    token = str(AccessToken.for_user(user))
    user.is_active = False
    user.save()
    assert me_status(token) == 401


def test_refresh_issues_a_new_access_token(anon, user):
    tokens = obtain(anon).json()
    time.sleep(1)  # iat has one-second resolution
    response = anon.post(reverse("token-refresh"), {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 200
    assert me_status(response.json()["access"]) == 200
    refused = anon.post(reverse("token-refresh"), {"refresh": tokens["access"]}, format="json")
    assert refused.status_code == 401


def test_refresh_for_inactive_user_is_refused(anon, user):
    refresh = obtain(anon).json()["refresh"]
    user.is_active = False
    user.save()
    assert anon.post(reverse("token-refresh"), {"refresh": refresh}, format="json").status_code == 401


@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_verify_accepts_a_good_token_of_the_stated_type(anon, user, kind):
    tokens = obtain(anon).json()
    response = anon.post(reverse("token-verify"), {"token": tokens[kind], "type": kind}, format="json")
    assert response.status_code == 200


def test_verify_refuses_wrong_type_deleted_or_inactive_owner(anon, user):
    tokens = obtain(anon).json()
    url = reverse("token-verify")
    assert anon.post(url, {"token": tokens["access"], "type": "refresh"}, format="json").status_code == 401
    assert anon.post(url, {"token": tokens["access"], "type": "bogus"}, format="json").status_code == 400
    assert anon.post(url, {"token": "not.a.token", "type": "access"}, format="json").status_code == 401
    user.is_active = False
    user.save()
    assert anon.post(url, {"token": tokens["access"], "type": "access"}, format="json").status_code == 401
    user.delete()
    assert anon.post(url, {"token": tokens["refresh"], "type": "refresh"}, format="json").status_code == 401
