"""The five built-in workflows of product-notes.md (migrate, premigrate, recall, send, site_sync).

Created only when missing, never overwritten (``workflows.definitions.ensure_builtin_workflows``),
so re-running migrations keeps an administrator's edits. Reversing leaves the rows: the table
itself goes with 0001.
"""

from django.db import migrations


def create_builtins(apps, schema_editor):
    from workflows.definitions import ensure_builtin_workflows

    ensure_builtin_workflows(apps.get_model("workflows", "Workflow"))


class Migration(migrations.Migration):

    dependencies = [
        ("workflows", "0001_jobs_and_workflows"),
    ]

    operations = [
        migrations.RunPython(create_builtins, migrations.RunPython.noop),
    ]
