"""What the hub adds to Django's users and groups: NAS identities, profiles, id sequences."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import F
from django.db.models.functions import Greatest


class IdSequence(models.Model):
    """A monotonically increasing counter for NAS uids and gids.

    Allocation is one conditional UPDATE (``next_value = max(next_value, floor) + 1``), which
    takes the row's write lock before reading, so concurrent creations never receive the same
    number on PostgreSQL or SQLite. Numbers are never handed out twice, even after the user or
    group holding one is deleted: a reused uid would give a new person the old owner's files.
    """

    name = models.CharField(max_length=32, unique=True)
    next_value = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: next {self.next_value}"

    @classmethod
    def allocate(cls, name: str, *, floor: int) -> int:
        """Return a fresh number >= ``floor``; must run inside a transaction."""
        cls.objects.get_or_create(name=name)
        cls.objects.filter(name=name).update(next_value=Greatest(F("next_value"), floor) + 1)
        return cls.objects.values_list("next_value", flat=True).get(name=name) - 1


class NasUser(models.Model):
    """The POSIX identity a hub user has on the sites' NAS (pushed to sites by a sync)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="nas_user")
    uid = models.BigIntegerField(unique=True, editable=False)
    primary_group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="primary_for_nas_users")
    allow_ssh = models.BooleanField(default=False)

    class Meta:
        ordering = ["uid"]

    def __str__(self) -> str:
        return f"{self.user.username} ({self.uid})"


class NasGroup(models.Model):
    """The POSIX group a hub group has on the sites' NAS."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="nas_group")
    gid = models.BigIntegerField(unique=True, editable=False)

    class Meta:
        ordering = ["gid"]

    def __str__(self) -> str:
        return f"{self.group.name} ({self.gid})"


class GroupDetail(models.Model):
    """Fields a hub group has beyond Django's ``Group`` (kept 1:1 so guardian sees plain groups)."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="detail")
    description = models.CharField(max_length=500, blank=True, default="")
    # Built-in groups (Administrators, Users) may not be renamed or deleted.
    builtin = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.group.name


class Profile(models.Model):
    """Contact details and preferences of a hub user."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    country = models.CharField(max_length=100, blank=True, default="")
    department = models.CharField(max_length=200, blank=True, default="")
    line_manager = models.CharField(max_length=200, blank=True, default="")
    phone = models.CharField(max_length=50, blank=True, default="")
    timezone = models.CharField(max_length=64, blank=True, default="")
    default_site = models.ForeignKey(
        "sites.Site", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    home_site = models.ForeignKey("sites.Site", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"profile of {self.user_id}"


class SyncRequest(models.Model):
    """A request to push NAS users or groups to the sites.

    Recorded by ``POST /api/users/sync/`` and ``/api/groups/sync/``; the agent that performs the
    push picks pending requests up (it arrives with the site agent), so a request made before any
    agent exists is kept rather than lost.
    """

    class Kind(models.TextChoices):
        USERS = "users", "users"
        GROUPS = "groups", "groups"

    class State(models.TextChoices):
        PENDING = "pending", "pending"  # recorded, not yet sent to any site
        SENT = "sent", "sent"  # sent to every site's agent
        DONE = "done", "done"  # every site confirmed

    kind = models.CharField(max_length=10, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"sync {self.kind} #{self.pk} ({self.state})"
