"""Create the two built-in groups and the uid/gid sequences.

Their permissions are granted after every migrate (hub.apps), because the permissions of models
added by later migrations do not exist yet when this one runs.
"""

from django.db import migrations

BUILTIN_GROUPS = (
    ("Administrators", "Manage everything on the hub."),
    ("Users", "Read-only access to all spaces."),
)


def create(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    GroupDetail = apps.get_model("hub", "GroupDetail")
    IdSequence = apps.get_model("hub", "IdSequence")
    for name, description in BUILTIN_GROUPS:
        group, _ = Group.objects.get_or_create(name=name)
        GroupDetail.objects.update_or_create(group=group, defaults={"builtin": True, "description": description})
    for name in ("uid", "gid"):
        IdSequence.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("hub", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
