"""One JSON error format; no 500 for bad input; 405; 413; 429 when throttled."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def test_unknown_api_path_is_a_json_404(admin):
    response = admin.get("/api/no-such-thing/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_put_is_not_offered_405(admin, admin_user):
    response = admin.put(reverse("user-detail", args=[admin_user.username]), {}, format="json")
    assert response.status_code == 405 and "detail" in response.json()


def test_unsupported_media_type_is_415(admin):
    response = admin.generic("POST", reverse("group-list"), "name=x", content_type="text/plain")
    assert response.status_code == 415


def test_non_object_json_body_is_400(admin):
    for body in ("[1, 2]", "42", '"text"', "null"):
        response = admin.generic("POST", reverse("group-list"), body, content_type="application/json")
        assert response.status_code == 400, (body, response.content)


def test_oversized_body_is_413(admin):
    huge = '{"name": "' + "x" * (3 * 1024 * 1024) + '"}'
    response = admin.generic("POST", reverse("group-list"), huge, content_type="application/json")
    assert response.status_code == 413


def test_invalid_filter_value_is_400(admin):
    response = admin.get(reverse("auditevent-list"), {"client_key": "abc"})
    assert response.status_code == 400 and "client_key" in response.json()


def test_garbage_authorization_headers_are_401_not_500(anon):
    for header in ("Bearer", "Bearer a.b.c", "Bearer " + "x" * 5000, "Api-Key", "Api-Key \u00e9\u00e9", "Basic zzz"):
        anon.credentials(HTTP_AUTHORIZATION=header)
        assert anon.get(reverse("user-list")).status_code == 401, header


@pytest.mark.throttled
def test_login_attempts_are_throttled_with_429(anon, settings):
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {"anon": None, "user": None, "auth": "3/min"}
    settings.REST_FRAMEWORK = rest
    UserFactory(username="victim")
    codes = [anon.post(reverse("token-obtain"), {"username": "victim", "password": "guess"},
                       format="json").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    last = anon.post(reverse("token-obtain"), {"username": "victim", "password": "guess"}, format="json")
    assert last.json()["code"] == "throttled" and "Retry-After" in last


@pytest.mark.throttled
def test_user_rate_is_configurable(member, settings):
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {"anon": None, "user": "2/min", "auth": None}
    settings.REST_FRAMEWORK = rest
    codes = [member.get(reverse("feature-list")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
