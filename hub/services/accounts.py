"""Use cases for users and groups. Views validate input with serializers, then call these.

Each function takes the acting user (``actor``) first; the audit trail is written by the view
layer from the request, these functions only change the estate.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import models, transaction
from rest_framework.exceptions import ValidationError

from hub import configuration, permissions
from hub.models import GroupDetail, IdSequence, NasGroup, NasUser, Profile, SyncRequest

User = get_user_model()


# --- built-in groups -----------------------------------------------------------------------------

def sync_builtin_group_permissions() -> None:
    """Administrators hold every permission; Users may view every space and every workflow (the
    workflows they may launch), once those models exist."""
    admins, _ = Group.objects.get_or_create(name=settings.HUB_ADMINISTRATORS_GROUP)
    users, _ = Group.objects.get_or_create(name=settings.HUB_USERS_GROUP)
    for group, description in (
        (admins, "Manage everything on the hub."),
        (users, "Read-only access to all spaces."),
    ):
        GroupDetail.objects.update_or_create(
            group=group, defaults={"builtin": True}, create_defaults={"builtin": True, "description": description}
        )
    admins.permissions.set(Permission.objects.all())
    users.permissions.add(*Permission.objects.filter(codename__in=("view_space", "view_workflow")))


# --- id allocation -------------------------------------------------------------------------------

def allocate_uid() -> int:
    return IdSequence.allocate("uid", floor=configuration.get("initial_uid"))


def allocate_gid() -> int:
    return IdSequence.allocate("gid", floor=configuration.get("initial_gid"))


# --- users ---------------------------------------------------------------------------------------

def _apply_profile(user, data: dict[str, Any] | None) -> None:
    if not data:
        return
    try:
        profile = user.profile
    except Profile.DoesNotExist:
        profile = Profile(user=user)
    for name, value in data.items():
        setattr(profile, name, value)
    profile.save()


def _apply_nas_user(user, data: dict[str, Any] | None) -> None:
    if data is None:
        return
    existing = NasUser.objects.filter(user=user).first()
    if existing is None:
        if "primary_group" not in data:
            raise ValidationError({"nas_user": {"primary_group": ["This field is required."]}})
        NasUser.objects.create(user=user, uid=allocate_uid(), **data)
        return
    for name, value in data.items():
        setattr(existing, name, value)
    existing.save()


@transaction.atomic
def create_user(actor, *, username: str, password: str, groups: list[Group] | None = None,
                nas_user: dict[str, Any] | None = None, profile: dict[str, Any] | None = None,
                **fields: Any):
    """Create a hub user; without ``groups`` the user joins the built-in Users group."""
    user = User(username=username, **fields)
    user.set_password(password)
    user.save()
    if groups is None:
        groups = list(Group.objects.filter(name=settings.HUB_USERS_GROUP))
    user.groups.set(groups)
    Profile.objects.create(user=user, **(profile or {}))
    _apply_nas_user(user, nas_user)
    return user


@transaction.atomic
def update_user(actor, user, *, groups: list[Group] | None = None, nas_user: dict[str, Any] | None = None,
                profile: dict[str, Any] | None = None, password: str | None = None, **fields: Any):
    for name, value in fields.items():
        setattr(user, name, value)
    if password is not None:
        user.set_password(password)
    user.save()
    if groups is not None:
        user.groups.set(groups)
    _apply_profile(user, profile)
    _apply_nas_user(user, nas_user)
    return user


def set_active(actor, user, *, active: bool) -> None:
    if not active and actor.pk == user.pk:
        raise ValidationError({"detail": "You cannot deactivate your own account."})
    User.objects.filter(pk=user.pk).update(is_active=active)
    user.is_active = active


def delete_user(actor, user) -> None:
    if actor.pk == user.pk:
        raise ValidationError({"detail": "You cannot delete your own account."})
    permissions.forget_object(user)
    user.delete()


def change_password(user, *, old_password: str, new_password: str) -> None:
    from django.contrib.auth import password_validation

    if not user.check_password(old_password):
        raise ValidationError({"old_password": ["The old password is not correct."]})
    try:
        password_validation.validate_password(new_password, user)
    except Exception as exc:  # django.core.exceptions.ValidationError
        raise ValidationError({"new_password": list(getattr(exc, "messages", [str(exc)]))}) from None
    user.set_password(new_password)
    user.save(update_fields=["password"])


def request_sync(actor, kind: str) -> SyncRequest:
    """Record that NAS users or groups should be pushed to every site."""
    return SyncRequest.objects.create(kind=kind, requested_by=actor)


# --- groups --------------------------------------------------------------------------------------

def _apply_nas_group(group: Group, wanted: bool | None) -> None:
    if wanted is None:
        return
    existing = NasGroup.objects.filter(group=group).first()
    if wanted and existing is None:
        NasGroup.objects.create(group=group, gid=allocate_gid())
    elif not wanted and existing is not None:
        if NasUser.objects.filter(primary_group=group).exists():
            raise ValidationError({"nas_group": ["This group is the primary group of NAS users."]})
        existing.delete()


@transaction.atomic
def create_group(actor, *, name: str, description: str = "", users: list | None = None,
                 permissions_: list[Permission] | None = None,
                 object_permissions: list[tuple[Permission, models.Model]] | None = None,
                 nas_group: bool | None = None) -> Group:
    group = Group.objects.create(name=name)
    GroupDetail.objects.create(group=group, description=description)
    if users is not None:
        group.user_set.set(users)
    if permissions_ is not None:
        group.permissions.set(permissions_)
    if object_permissions is not None:
        permissions.set_group_object_permissions(group, object_permissions)
    _apply_nas_group(group, nas_group)
    return group


def _is_builtin(group: Group) -> bool:
    return GroupDetail.objects.filter(group=group, builtin=True).exists()


@transaction.atomic
def update_group(actor, group: Group, *, name: str | None = None, description: str | None = None,
                 users: list | None = None, permissions_: list[Permission] | None = None,
                 object_permissions: list[tuple[Permission, models.Model]] | None = None,
                 nas_group: bool | None = None) -> Group:
    if name is not None and name != group.name:
        if _is_builtin(group):
            raise ValidationError({"name": ["A built-in group cannot be renamed."]})
        group.name = name
        group.save(update_fields=["name"])
    if description is not None:
        GroupDetail.objects.update_or_create(group=group, defaults={"description": description})
    if users is not None:
        group.user_set.set(users)
    if permissions_ is not None:
        if group.name == settings.HUB_ADMINISTRATORS_GROUP:
            raise ValidationError({"permissions": ["Administrators always hold every permission."]})
        group.permissions.set(permissions_)
    if object_permissions is not None:
        permissions.set_group_object_permissions(group, object_permissions)
    _apply_nas_group(group, nas_group)
    return group


def delete_group(actor, group: Group) -> None:
    if _is_builtin(group):
        raise ValidationError({"detail": "A built-in group cannot be deleted."})
    if NasUser.objects.filter(primary_group=group).exists():
        raise ValidationError({"detail": "This group is the primary group of NAS users; change theirs first."})
    permissions.forget_object(group)
    group.delete()
