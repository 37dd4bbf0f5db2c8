"""Create the first administrator if it does not exist (used by ``make run``)."""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from hub.env import read_or_create_secret


class Command(BaseCommand):
    help = "Ensure an administrator account exists; prints its name and password when created."

    def handle(self, *args, **options) -> None:
        username = os.environ.get("HUB_ADMIN_USER", "").strip() or "admin"
        given = os.environ.get("HUB_ADMIN_PASSWORD", "")
        password = given or read_or_create_secret(settings.VAR_DIR / "admin_password", length=18)
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True,
                                                                                "is_superuser": True})
        if created or given:
            # A given password always wins; the generated one is only set on creation so an
            # admin who changed it through the API keeps theirs.
            user.set_password(password)
            user.is_active = True
            user.save()
        user.groups.add(Group.objects.get(name=settings.HUB_ADMINISTRATORS_GROUP))
        source = "HUB_ADMIN_PASSWORD" if given else str(settings.VAR_DIR / "admin_password")
        self.stdout.write(f"Administrator: {username}  password: {password}  (from {source})")
