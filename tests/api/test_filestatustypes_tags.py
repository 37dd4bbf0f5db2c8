"""File status types (seeded, relabelled by administrators) and search tags (completion)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hub import permissions
from hub.models import AuditEvent
from sites.api.views.catalog import TAGS_LIMIT
from sites.models import FileStatusType, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

SEEDED = {"unmanaged", "premigrated", "migrated", "hydrated", "offline", "unknown"}


def detail(key: str) -> str:
    return reverse("filestatustype-detail", args=[key])


# --- file status types: personas ------------------------------------------------------------------


def test_anonymous_gets_401_on_file_status_types(anon):
    assert anon.get(reverse("filestatustype-list")).status_code == 401
    assert anon.get(detail("migrated")).status_code == 401
    assert anon.patch(detail("migrated"), {"label": "x"}, format="json").status_code == 401


def test_any_signed_in_user_reads_the_seeded_types(outsider):
    response = outsider.get(reverse("filestatustype-list"))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 6 and {row["key"] for row in body["results"]} == SEEDED
    migrated = outsider.get(detail("migrated")).json()
    assert migrated == {"key": "migrated", "label": "Migrated (stub)", "background_color": "#ffe0b2",
                        "text_color": "#e65100", "url": migrated["url"]}
    assert migrated["url"].endswith(detail("migrated"))


def test_an_unknown_key_is_a_404(outsider):
    assert outsider.get(detail("frozen")).status_code == 404


def test_a_signed_in_user_without_change_permission_gets_403_on_patch(outsider):
    response = outsider.patch(detail("migrated"), {"label": "Mine now"}, format="json")
    assert response.status_code == 403
    assert FileStatusType.objects.get(key="migrated").label == "Migrated (stub)"


def test_a_member_granted_change_on_one_type_may_relabel_it(member, member_user):
    permissions.grant("sites.change_filestatustype", member_user, FileStatusType.objects.get(key="offline"))
    assert member.patch(detail("offline"), {"label": "Tape"}, format="json").status_code == 200
    assert member.patch(detail("migrated"), {"label": "Tape"}, format="json").status_code == 403


def test_admin_relabels_and_recolours_and_the_change_is_audited(admin):
    response = admin.patch(detail("migrated"), {"label": "Stub", "background_color": "#ABC",
                                                "text_color": "#1F77B4"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["background_color"] == "#abc" and response.json()["text_color"] == "#1f77b4"
    stored = FileStatusType.objects.get(key="migrated")
    assert (stored.label, stored.background_color, stored.text_color) == ("Stub", "#abc", "#1f77b4")
    event = AuditEvent.objects.get(model="sites.filestatustype", action="update")
    assert event.object_pk == "migrated" and set(event.changes) == {"label", "background_color", "text_color"}


def test_types_cannot_be_created_deleted_or_replaced(admin):
    assert admin.post(reverse("filestatustype-list"), {"key": "frozen", "label": "Frozen",
                                                       "background_color": "#fff", "text_color": "#000"},
                      format="json").status_code == 405
    assert admin.delete(detail("migrated")).status_code == 405
    assert admin.put(detail("migrated"), {"label": "x", "background_color": "#fff", "text_color": "#000"},
                     format="json").status_code == 405
    assert set(FileStatusType.objects.values_list("key", flat=True)) == SEEDED


# --- file status types: validation ----------------------------------------------------------------


@pytest.mark.parametrize(("payload", "field"), [
    ({"background_color": "red"}, "background_color"),
    ({"background_color": "#12345g"}, "background_color"),
    ({"background_color": "#1234"}, "background_color"),
    ({"background_color": "123456"}, "background_color"),
    ({"text_color": "#ffffff00"}, "text_color"),
    ({"text_color": ""}, "text_color"),
    ({"label": ""}, "label"),
    ({"label": "x" * 101}, "label"),
    ({"label": {"not": "a string"}}, "label"),
    ({"key": "renamed"}, "key"),
])
def test_bad_patches_are_a_400_naming_the_field_and_change_nothing(admin, payload, field):
    before = admin.get(detail("hydrated")).json()
    response = admin.patch(detail("hydrated"), payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert admin.get(detail("hydrated")).json() == before
    assert not AuditEvent.objects.filter(action="update").exists()


def test_sending_the_unchanged_key_back_is_accepted(admin):
    response = admin.patch(detail("hydrated"), {"key": "hydrated", "label": "Back on disk"}, format="json")
    assert response.status_code == 200 and response.json()["label"] == "Back on disk"


# --- tags -----------------------------------------------------------------------------------------


def test_tags_need_a_signed_in_caller(anon):
    assert anon.get(reverse("tag-list")).status_code == 401


def test_tags_are_a_plain_list_of_names_sorted(outsider):
    for name in ("zeta", "alpha", "beta"):
        Tag.objects.create(name=name)
    response = outsider.get(reverse("tag-list"))
    assert response.status_code == 200
    assert response.json() == [{"name": "alpha"}, {"name": "beta"}, {"name": "zeta"}]


def test_tag_filter_is_a_case_insensitive_substring_with_prefix_matches_first(member):
    for name in ("climate-model", "Model-Output", "raw", "supermodel", "models"):
        Tag.objects.create(name=name)
    names = [row["name"] for row in member.get(reverse("tag-list"), {"filter": "MODEL"}).json()]
    assert set(names) == {"climate-model", "Model-Output", "supermodel", "models"}
    assert set(names[:2]) == {"Model-Output", "models"}
    assert names[2:] == ["climate-model", "supermodel"]


def test_tag_filter_treats_like_wildcards_literally(member):
    for name in ("100%", "1000", "a_b", "axb"):
        Tag.objects.create(name=name)
    assert [row["name"] for row in member.get(reverse("tag-list"), {"filter": "0%"}).json()] == ["100%"]
    assert [row["name"] for row in member.get(reverse("tag-list"), {"filter": "a_"}).json()] == ["a_b"]


def test_tags_are_capped(member):
    Tag.objects.bulk_create([Tag(name=f"tag{i:04d}") for i in range(TAGS_LIMIT + 50)])
    body = member.get(reverse("tag-list"), {"filter": "tag", "page_size": 0}).json()
    assert len(body) == TAGS_LIMIT
    assert body[0] == {"name": "tag0000"} and body[-1] == {"name": f"tag{TAGS_LIMIT - 1:04d}"}


def test_bad_tag_filters_are_a_400(member):
    assert member.get(reverse("tag-list"), {"filter": "a\x00b"}).status_code == 400
    assert member.get(reverse("tag-list"), {"filter": "x" * 256}).status_code == 400


def test_an_empty_filter_lists_every_tag_up_to_the_cap(member):
    Tag.objects.create(name="only")
    assert member.get(reverse("tag-list"), {"filter": ""}).json() == [{"name": "only"}]


def test_hostile_keys_are_404_not_500(admin):
    for value in ("%00", "x" * 500, "%C3%A9", "migrated%00"):
        response = admin.get(detail("placeholder").replace("placeholder", value))
        assert response.status_code == 404, (value, response.status_code)
        assert admin.patch(detail("placeholder").replace("placeholder", value), {"label": "x"},
                           format="json").status_code == 404
