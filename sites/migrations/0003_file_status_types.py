"""Seed the HSM file states the agents report (keys are fixed; labels and colours editable)."""

from django.db import migrations

STATES = [
    ("unmanaged", "Unmanaged", "#e0e0e0", "#212121"),
    ("premigrated", "Premigrated", "#bbdefb", "#0d47a1"),
    ("migrated", "Migrated (stub)", "#ffe0b2", "#e65100"),
    ("hydrated", "Hydrated", "#c8e6c9", "#1b5e20"),
    ("offline", "Offline", "#ffcdd2", "#b71c1c"),
    ("unknown", "Unknown", "#f5f5f5", "#616161"),
]


def seed(apps, schema_editor):
    FileStatusType = apps.get_model("sites", "FileStatusType")
    for key, label, background, text in STATES:
        FileStatusType.objects.get_or_create(
            key=key, defaults={"label": label, "background_color": background, "text_color": text}
        )


class Migration(migrations.Migration):
    dependencies = [("sites", "0002_estate")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
