"""Re-encrypt every stored secret with the first key of HUB_FIELD_ENCRYPTION_KEYS.

Key rotation: put the new key first in HUB_FIELD_ENCRYPTION_KEYS (keep the old one after it),
restart, run this command, then remove the old key. Each row is read with whichever key
decrypts it and written back under the new one, in one transaction per model.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from hub.secrets import EncryptedTextField


class Command(BaseCommand):
    help = "Re-encrypt stored secrets (bucket and data-store credentials) with the current first key."

    def handle(self, *args, **options) -> None:
        for model in apps.get_models():
            fields = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            count = 0
            with transaction.atomic():
                for obj in model.objects.select_for_update().only("pk", *fields).iterator(chunk_size=500):
                    obj.save(update_fields=fields)
                    count += 1
            self.stdout.write(f"{model._meta.label}: {count} rows re-encrypted ({', '.join(fields)})")
