"""The OpenAPI schema: generated, valid, and listing every endpoint at the reference's path."""

from __future__ import annotations

import json
from pathlib import Path

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


# --- the estate (issue: sites and storage inventory) --------------------------------------------
# ``reference_estate_fields.json`` was extracted from the reference (hub-api-reference.txt): for
# each operation, the top-level response fields and the writable request fields it documents.
# The reference's flattened HTML lost the headings of the share endpoints (product-notes.md);
# their entries were written by hand from the field lists under GET /settingstasks/{id}/.
ESTATE_FIELDS = json.loads((Path(__file__).parent / "reference_estate_fields.json").read_text())
# Reference fields that we deliberately do not accept or answer, and why.
_SITE_COUNTS = {"directories_count", "files_count", "files_hydrated_count", "files_stubbed_count", "spaces"}
ESTATE_EXCEPTIONS: dict[str, set[str]] = {
    # Counts come from the agent's inventory report; spaces are placed through /api/spaces/.
    "post /api/sites/": _SITE_COUNTS,
    "patch /api/sites/{id}/": _SITE_COUNTS,
    # A node's identity and heartbeat come from its agent, never from a user.
    "patch /api/nodes/{id}/": {"last_heartbeat", "name", "site"},
    # Refresh answers 202 with the task it queued (id, task_id, url), not the site.
    "post /api/sites/{id}/refresh/": {
        "am_i_configured", "bandwidth", "color", "directories_count", "editable", "files_count",
        "files_hydrated_count", "files_stubbed_count", "label", "name", "public_url", "ready_to_configure",
        "shortcode", "spaces", "timezone", "type",
    },
}


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    if "allOf" in node:
        merged: dict = {"properties": {}}
        for part in node["allOf"]:
            merged["properties"].update(_resolve(schema, part).get("properties", {}))
        return merged
    return node


def _response_properties(schema: dict, operation: dict) -> set[str]:
    for status in ("200", "201", "202"):
        content = operation.get("responses", {}).get(status, {}).get("content", {})
        if "application/json" not in content:
            continue
        body = _resolve(schema, content["application/json"]["schema"])
        if body.get("type") == "array":
            body = _resolve(schema, body["items"])
        properties = body.get("properties", {})
        if "results" in properties and "count" in properties:
            properties = _resolve(schema, properties["results"]["items"]).get("properties", {})
        return set(properties)
    return set()


def _request_properties(schema: dict, operation: dict) -> set[str]:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return set()
    return set(_resolve(schema, content["application/json"]["schema"]).get("properties", {}))


def test_every_estate_endpoint_is_in_the_schema_with_the_reference_method(schema):
    expected: dict[str, set[str]] = {}
    for key in ESTATE_FIELDS:
        method, path = key.split(" ", 1)
        expected.setdefault(path, set()).add(method)
    missing = {path: methods - set(schema["paths"].get(path, {})) for path, methods in expected.items()}
    assert not {path: methods for path, methods in missing.items() if methods}


@pytest.mark.parametrize("key", sorted(ESTATE_FIELDS))
def test_estate_operation_documents_the_reference_fields(schema, key):
    method, path = key.split(" ", 1)
    operation = schema["paths"][path][method]
    reference = ESTATE_FIELDS[key]
    skip = ESTATE_EXCEPTIONS.get(key, set())
    if reference["response"]:
        missing = set(reference["response"]) - _response_properties(schema, operation) - skip
        assert not missing, f"{key}: response lacks {sorted(missing)}"
    if reference["request"]:
        missing = set(reference["request"]) - _request_properties(schema, operation) - skip
        assert not missing, f"{key}: request lacks {sorted(missing)}"
