"""The OpenAPI schema: generated, valid, and listing every endpoint at the reference's path."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from openapi_spec_validator import validate

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

REFERENCE_PATHS = {
    "/api/auth/clientkeys/": {"get", "post"},
    "/api/auth/clientkeys/{id}/": {"get", "patch", "delete"},
    "/api/auth/token/": {"post"},
    "/api/auth/token/publickey/": {"get"},
    "/api/auth/token/refresh/": {"post"},
    "/api/auth/token/verify/": {"post"},
    "/api/configurations/": {"get", "patch"},
    "/api/features/": {"get"},
    "/api/features/{name}/": {"get", "patch"},
    "/api/groups/": {"get", "post"},
    "/api/groups/sync/": {"post"},
    "/api/groups/{id}/": {"get", "patch", "delete"},
    "/api/my-permissions/": {"get"},
    "/api/permissions/": {"get"},
    "/api/permissions/{id}/": {"get"},
    "/api/settings/": {"get", "patch"},
    "/api/settings/sync/": {"post"},
    "/api/users/": {"get", "post"},
    "/api/users/change_password/": {"post"},
    "/api/users/sync/": {"post"},
    "/api/users/{username}/": {"get", "patch", "delete"},
    "/api/users/{username}/activate/": {"post"},
    "/api/users/{username}/deactivate/": {"post"},
    "/api/audit/": {"get"},
    "/api/audit/{id}/": {"get"},
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--file", str(path), "--validate", "--fail-on-warn")
    return yaml.safe_load(path.read_text())


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate(schema)


def test_every_endpoint_is_in_the_schema_at_the_reference_path(schema):
    for path, methods in REFERENCE_PATHS.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, set(schema["paths"][path]))


def test_passwords_are_write_only_in_the_schema(schema):
    components = schema["components"]["schemas"]
    assert "password" in components["UserRequest"]["properties"]
    assert "password" not in components["User"]["properties"]


def test_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
