"""``/api/workflows/``: the permission matrix, the built-ins a migration makes, round trips,
every validation rule as a 400 that writes nothing, PATCH checked on the merged definition, the
built-ins' name and delete rules, jobs surviving their workflow, filters, and launch values for
``site`` fields (the rest of ``resolve_field_values`` is in tests/unit/test_workflow_validation.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.exceptions import ValidationError

from hub.models import AuditEvent
from tests.api.matrix import PermissionMatrix
from tests.conftest import api_client
from tests.factories import SiteFactory, UserFactory
from tests.workflows.factories import JobFactory, WorkflowFactory
from workflows.definitions import BUILTIN_NAMES, BUILTIN_WORKFLOWS, ensure_builtin_workflows, resolve_field_values
from workflows.models import Job, Workflow

pytestmark = [pytest.mark.django_db]

LIST = reverse("workflow-list")
REFERENCE_FIELDS = {
    "discovery", "discovery_options", "enabled", "external_only", "fields", "filter_rules", "icon_classes", "id",
    "label", "name", "preferred_queue", "schedule_only", "visible",
}


def detail(workflow: Workflow) -> str:
    return reverse("workflow-detail", args=[workflow.pk])


def payload(**overrides: Any) -> dict[str, Any]:
    """A valid custom workflow: premigrate files here, then stub them on a chosen site."""
    body = {
        "name": "archive", "label": "Archive", "icon_classes": ["fa", "fa-archive"], "discovery": "recursive",
        "discovery_options": {"skip_missing": True}, "enabled": True, "visible": True, "external_only": True,
        "schedule_only": False, "preferred_queue": "bulk",
        "fields": [
            {"name": "destinationsite", "type": "site", "label": "Destination", "required": True},
            {"name": "hydrate", "type": "bool", "default": False},
        ],
        "filter_rules": [
            {"type": "file", "state": "all", "include": ["*.dat"], "exclude": ["*.tmp"], "action": [
                {"name": "migrate", "premigrate": True},
                {"name": "reverse_stub", "site": "{destinationsite}", "hydrate": "{hydrate}"},
            ]},
        ],
    }
    body.update(overrides)
    return body


def users_group_member():
    return api_client(UserFactory(groups=[Group.objects.get(name=settings.HUB_USERS_GROUP)]))


class TestWorkflowPermissions(PermissionMatrix):
    basename = "workflow"
    update_field = "label"

    def make_target(self):
        return WorkflowFactory()

    def create_payload(self):
        return payload()

    def update_payload(self):
        return {"label": "Renamed workflow"}

    def bad_payloads(self):
        return [
            ({}, "name"),
            ({**payload(), "name": "has space"}, "name"),
            ({**payload(), "name": "migrate"}, "name"),  # a built-in's name is taken
            ({**payload(), "label": ""}, "label"),
            ({**payload(), "discovery": "deep"}, "discovery"),
            ({**payload(), "filter_rules": []}, "filter_rules"),
            ({**payload(), "fields": "lock_level"}, "fields"),
            ({**payload(), "icon_classes": "fa fa-x"}, "icon_classes"),
            ({**payload(), "preferred_queue": "a b"}, "preferred_queue"),
            ({**payload(), "discovery_options": {"nope": 1}}, "discovery_options"),
        ]


# --- built-ins -----------------------------------------------------------------------------------

def test_the_five_builtins_exist_after_migrate_flagged_builtin():
    builtins = Workflow.objects.filter(builtin=True).order_by("name")
    assert list(builtins.values_list("name", flat=True)) == ["migrate", "premigrate", "recall", "send", "site_sync"]
    assert all(w.enabled and w.visible for w in builtins)


def chain(name: str, rule: int = 0) -> list[dict[str, Any]]:
    return Workflow.objects.get(name=name).filter_rules[rule]["action"]


def test_migrate_premigrate_and_recall_run_one_step_on_files_with_their_lock_level_default():
    for name, step, default in (
        ("migrate", {"name": "migrate", "lock_level": "{lock_level}"}, "partial"),
        ("premigrate", {"name": "migrate", "premigrate": True, "lock_level": "{lock_level}"}, "implicit"),
        ("recall", {"name": "recall", "lock_level": "{lock_level}"}, "implicit"),
    ):
        workflow = Workflow.objects.get(name=name)
        assert workflow.discovery == "recursive"
        assert [(r["type"], r["state"]) for r in workflow.filter_rules] == [("file", "all")]
        assert chain(name) == [step]
        (lock_level,) = workflow.fields
        assert lock_level["options"] == ["partial", "implicit", "none"] and lock_level["default"] == default


def test_send_premigrates_here_then_reverse_stubs_on_the_destination():
    assert chain("send") == [
        {"name": "migrate", "premigrate": True},
        {"name": "reverse_stub", "site": "{destinationsite}", "queue": "{destinationqueue}", "hydrate": "{hydrate}"},
    ]
    fields = {f["name"]: f for f in Workflow.objects.get(name="send").fields}
    assert fields["destinationsite"]["type"] == "site" and fields["destinationsite"]["required"] is True
    assert fields["destinationqueue"]["type"] == "queue" and fields["destinationqueue"]["default"] == "default"
    assert fields["hydrate"]["type"] == "bool" and fields["hydrate"]["default"] is False


def test_site_sync_uses_snapdiff_with_one_rule_per_discovery_state():
    workflow = Workflow.objects.get(name="site_sync")
    assert workflow.discovery == "snapdiff"
    by_state = {r["state"]: r["action"] for r in workflow.filter_rules}
    assert list(by_state) == ["created", "updated", "moved", "deleted"]
    for state in ("created", "updated"):
        premigrate, update = by_state[state]
        assert premigrate == {"name": "migrate", "premigrate": True, "overwrite": True, "abort_missing": True}
        assert update["name"] == "reverse_stub" and update["site"] == "{destinationsite}"
        assert update["sync_preference"] == "{sync_preference}"
    assert [s["name"] for s in by_state["moved"]] == ["move"] and by_state["moved"][0]["site"] == "{destinationsite}"
    assert [s["name"] for s in by_state["deleted"]] == ["delete"]
    preference = {f["name"]: f for f in workflow.fields}["sync_preference"]
    assert preference["options"] == ["newest", "local", "ignore"] and preference["default"] == "newest"


def test_ensure_builtins_is_idempotent_and_keeps_an_administrators_edits():
    Workflow.objects.filter(name="migrate").update(label="Tier out", enabled=False)
    Workflow.objects.filter(name="recall").delete()
    assert ensure_builtin_workflows() == ["recall"]
    assert ensure_builtin_workflows() == []
    migrate = Workflow.objects.get(name="migrate")
    assert (migrate.label, migrate.enabled) == ("Tier out", False)
    assert Workflow.objects.filter(builtin=True).count() == len(BUILTIN_WORKFLOWS)


# --- reading -------------------------------------------------------------------------------------

def test_a_workflow_shows_every_reference_field_plus_builtin_and_url(admin):
    body = admin.get(detail(Workflow.objects.get(name="send"))).json()
    assert set(body) == REFERENCE_FIELDS | {"builtin", "url"}
    assert body["builtin"] is True and body["url"].endswith(detail(Workflow.objects.get(name="send")))


def test_every_member_of_users_sees_every_workflow_but_cannot_write():
    reader = users_group_member()
    custom = WorkflowFactory()
    listed = {row["name"] for row in reader.get(LIST).json()["results"]}
    assert listed == {*BUILTIN_NAMES, custom.name}
    assert reader.get(detail(custom)).status_code == 200
    assert reader.post(LIST, payload(), format="json").status_code == 403
    assert reader.patch(detail(custom), {"label": "x"}, format="json").status_code == 403
    assert reader.delete(detail(custom)).status_code == 403
    assert Workflow.objects.filter(pk=custom.pk, label=custom.label).exists()


def test_a_user_outside_every_group_sees_no_workflow_not_even_builtins(outsider):
    assert outsider.get(LIST).json()["count"] == 0
    assert outsider.get(detail(Workflow.objects.get(name="migrate"))).status_code == 404


# --- writing -------------------------------------------------------------------------------------

def test_a_definition_round_trips(admin):
    created = admin.post(LIST, payload(), format="json")
    assert created.status_code == 201, created.content
    body = admin.get(created.json()["url"]).json()
    assert {key: body[key] for key in payload()} == payload()
    assert body["builtin"] is False


def test_rule_defaults_are_stored_so_every_rule_shows_every_key(admin):
    response = admin.post(LIST, payload(filter_rules=[{"action": [{"name": "recall"}]}]), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["filter_rules"] == [
        {"type": "all", "state": "all", "include": [], "exclude": [], "action": [{"name": "recall"}]}
    ]
    assert Workflow.objects.get(name="archive").filter_rules == response.json()["filter_rules"]


def test_an_empty_discovery_is_stored_as_none(admin):
    response = admin.post(LIST, payload(discovery=""), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["discovery"] is None and Workflow.objects.get(name="archive").discovery is None


def test_builtin_cannot_be_set_by_a_request(admin):
    response = admin.post(LIST, payload(builtin=True), format="json")
    assert response.status_code == 201 and response.json()["builtin"] is False


@pytest.mark.parametrize(("change", "key", "words"), [
    ({"filter_rules": [{"type": "file", "action": [{"name": "migrat"}]}]}, "filter_rules",
     "rule 0, step 0: unknown task 'migrat' (known: delete, migrate, move, recall, reverse_stub)."),
    ({"filter_rules": [{"type": "file", "actions": [], "action": [{"name": "recall"}]}]}, "filter_rules",
     "rule 0: unknown key(s) actions"),
    ({"filter_rules": [{"type": "folder", "action": [{"name": "recall"}]}]}, "filter_rules", "unknown type 'folder'"),
    ({"filter_rules": [{"state": "renamed", "action": [{"name": "recall"}]}]}, "filter_rules",
     "unknown state 'renamed'"),
    ({"filter_rules": [{"include": [""], "action": [{"name": "recall"}]}]}, "filter_rules",
     "'include' pattern 0 must be a non-empty string"),
    ({"filter_rules": [{"exclude": "*.tmp", "action": [{"name": "recall"}]}]}, "filter_rules",
     "'exclude' must be a list of glob patterns"),
    ({"filter_rules": [{"action": []}]}, "filter_rules", "'action' must be a non-empty list"),
    ({"filter_rules": [{"action": [{"name": "migrate", "target": "archive"}]}]}, "filter_rules",
     "'target' is chosen by the hub"),
    ({"filter_rules": [{"action": [{"name": "migrate", "speed": 3}]}]}, "filter_rules", "unknown option 'speed'"),
    ({"filter_rules": [{"action": [{"name": "recall", "verify": "{verify}"}]}]}, "filter_rules",
     "refers to field 'verify', which the workflow does not define"),
    ({"filter_rules": [{"action": [{"name": "snapdiff"}]}]}, "filter_rules", "is a discovery task"),
    ({"fields": [{"name": "x", "type": "choice", "options": ["a"], "default": "b"}]}, "fields",
     "the default 'b' must be one of: a"),
    ({"fields": [{"name": "x", "type": "choice"}]}, "fields", "a 'choice' field needs 'options'"),
    ({"fields": [{"name": "x", "type": "bool", "default": "no"}]}, "fields", "must be true or false"),
    ({"fields": [{"name": "x", "type": "int", "default": 1.5}]}, "fields", "must be an integer"),
    ({"fields": [{"name": "x", "type": "text"}]}, "fields", "unknown type 'text'"),
    ({"fields": [{"name": "x-y", "type": "string"}]}, "fields", "'name' must be an identifier"),
    ({"fields": [{"name": "x", "type": "string"}, {"name": "x", "type": "int"}]}, "fields",
     "the name 'x' is used by another field"),
    ({"discovery": "deep"}, "discovery", "not a valid choice"),
    ({"discovery_options": {"skip_missing": "no"}}, "discovery_options", "'skip_missing' must be true or false"),
    ({"discovery_options": {"depth": 3}}, "discovery_options", "Unknown option 'depth'"),
    ({"preferred_queue": "a.b"}, "preferred_queue", "[a-zA-Z0-9-_]+"),
])
def test_every_validation_rule_is_a_400_naming_the_problem_and_writes_nothing(admin, change, key, words):
    body = {**payload(fields=[], filter_rules=[{"action": [{"name": "recall"}]}]), **change}
    before = (Workflow.objects.count(), AuditEvent.objects.count())
    response = admin.post(LIST, body, format="json")
    assert response.status_code == 400, response.content
    assert key in response.json(), response.json()
    assert any(words in message for message in response.json()[key]), response.json()
    assert (Workflow.objects.count(), AuditEvent.objects.count()) == before


def test_a_patch_is_checked_against_the_stored_definition(admin):
    workflow = WorkflowFactory()  # its rule refers to {lock_level}
    response = admin.patch(detail(workflow), {"fields": []}, format="json")
    assert response.status_code == 400
    assert "refers to field 'lock_level'" in response.json()["filter_rules"][0]
    response = admin.patch(detail(workflow), {"filter_rules": [{"action": [{"name": "recall", "x": "{nope}"}]}]},
                           format="json")
    assert response.status_code == 400 and "refers to field 'nope'" in response.json()["filter_rules"][0]
    workflow.refresh_from_db()
    assert workflow.fields[0]["name"] == "lock_level" and workflow.filter_rules[0]["action"][0]["name"] == "migrate"


def test_a_patch_may_change_fields_and_rules_together(admin):
    workflow = WorkflowFactory()
    change = {"fields": [{"name": "hydrate", "type": "bool", "default": True}],
              "filter_rules": [{"action": [{"name": "recall"}, {"name": "reverse_stub", "hydrate": "{hydrate}"}]}]}
    response = admin.patch(detail(workflow), change, format="json")
    assert response.status_code == 200, response.content
    workflow.refresh_from_db()
    assert workflow.filter_rules[0]["action"][1] == {"name": "reverse_stub", "hydrate": "{hydrate}"}
    assert workflow.filter_rules[0]["type"] == "all"


def test_a_patch_of_other_keys_leaves_the_stored_rules_as_they_are(admin):
    workflow = WorkflowFactory(filter_rules=[{"action": [{"name": "recall"}]}])
    assert admin.patch(detail(workflow), {"enabled": False}, format="json").status_code == 200
    workflow.refresh_from_db()
    assert workflow.filter_rules == [{"action": [{"name": "recall"}]}] and workflow.enabled is False


def test_a_builtin_can_be_edited_but_not_renamed(admin):
    migrate = Workflow.objects.get(name="migrate")
    response = admin.patch(detail(migrate), {"name": "tier-out"}, format="json")
    assert response.status_code == 400 and "built-in" in response.json()["name"][0]
    assert admin.patch(detail(migrate), {"name": "migrate", "label": "Tier out", "visible": False},
                       format="json").status_code == 200
    migrate.refresh_from_db()
    assert (migrate.name, migrate.label, migrate.visible, migrate.builtin) == ("migrate", "Tier out", False, True)


def test_a_custom_workflow_can_be_renamed(admin):
    workflow = WorkflowFactory()
    assert admin.patch(detail(workflow), {"name": "renamed"}, format="json").status_code == 200
    assert Workflow.objects.filter(pk=workflow.pk, name="renamed").exists()


def test_deleting_a_builtin_is_a_409_and_keeps_it(admin):
    send = Workflow.objects.get(name="send")
    response = admin.delete(detail(send))
    assert response.status_code == 409 and "built-in" in response.json()["detail"]
    assert Workflow.objects.filter(pk=send.pk).exists()


def test_deleting_a_workflow_keeps_its_jobs_with_their_copy_of_the_definition(admin):
    workflow = WorkflowFactory(name="archive")
    job = JobFactory(workflow=workflow)
    assert admin.delete(detail(workflow)).status_code == 204
    job = Job.objects.get(pk=job.pk)
    assert job.workflow is None and job.workflow_name == "archive"
    assert job.definition["filter_rules"][0]["action"][0]["name"] == "migrate"


# --- filters -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "expected"), [
    ("name=send", {"send"}),
    ("enabled=false", {"off"}),
    ("visible=false", {"hidden"}),
    ("external_only=true", {"off"}),
    ("schedule_only=1", {"hidden"}),
    ("discovery=snapdiff", {"site_sync"}),
    ("discovery=none", {"given"}),
    ("discovery=recursive&enabled=true&visible=true&name=migrate", {"migrate"}),
])
def test_workflows_filter_by_name_flags_and_discovery(admin, query, expected):
    WorkflowFactory(name="off", enabled=False, external_only=True)
    WorkflowFactory(name="hidden", visible=False, schedule_only=True)
    WorkflowFactory(name="given", discovery=None)
    response = admin.get(f"{LIST}?{query}")
    assert response.status_code == 200
    assert {row["name"] for row in response.json()["results"]} == expected


@pytest.mark.parametrize("query", ["enabled=yes", "visible=maybe", "discovery=deep"])
def test_an_unreadable_filter_value_is_a_400(admin, query):
    response = admin.get(f"{LIST}?{query}")
    assert response.status_code == 400 and query.split("=")[0] in response.json()


# --- launch values for site fields ---------------------------------------------------------------

SEND_FIELDS = next(w["fields"] for w in BUILTIN_WORKFLOWS if w["name"] == "send")


def test_a_site_field_takes_the_name_of_an_existing_site():
    SiteFactory(name="remote")
    assert resolve_field_values(SEND_FIELDS, {"destinationsite": "remote"}) == {
        "destinationsite": "remote", "destinationqueue": "default", "hydrate": False,
    }


def test_a_site_field_naming_no_site_is_refused():
    with pytest.raises(ValidationError) as caught:
        resolve_field_values(SEND_FIELDS, {"destinationsite": "nowhere"})
    assert caught.value.detail == {"fields": {"destinationsite": ["There is no site named 'nowhere'."]}}


def test_send_needs_its_destination_site():
    with pytest.raises(ValidationError) as caught:
        resolve_field_values(SEND_FIELDS, {"hydrate": True})
    assert list(caught.value.detail["fields"]) == ["destinationsite"]
