"""Every permission question the hub asks, and the only module that talks to django-guardian.

The rule for any model, now and later:

* a user with the model-level permission (``app.view_site``) — directly or through a group such
  as Administrators — may do that to every object of the model;
* otherwise an object-level permission granted through guardian (to the user or one of the
  user's groups) allows it on that object;
* a viewset may also name an *owner* rule (a client key belongs to its user; a user is its own
  owner), and owners may view and change what they own;
* a model may name *permission parents* (``permission_parents = ("site",)`` on ``Node``): the
  same permission on a parent covers the child, so a group granted ``view`` on a site sees its
  nodes, pools and filesystems, and a group that administers (``change``) a space manages its
  shares and targets. Parents may be foreign keys or many-to-many fields and may themselves
  have parents.

Lists are filtered to what the caller may view and an object the caller may not view is a 404,
so the API never confirms that something exists to someone who may not see it. An object the
caller may view but not change answers 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q, QuerySet
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, get_objects_for_user, remove_perm
from rest_framework import permissions as drf_permissions

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from rest_framework.request import Request
    from rest_framework.views import APIView

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
_METHOD_ACTIONS = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": ADD, "PUT": CHANGE, "PATCH": CHANGE,
                   "DELETE": DELETE}


def perm_name(model: type[models.Model], action: str) -> str:
    """``app_label.<action>_<model>`` for a model class."""
    meta = model._meta
    return f"{meta.app_label}.{action}_{meta.model_name}"


def is_admin(user: Any) -> bool:
    """Whether the user administers the hub: a superuser or a member of Administrators."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    from django.conf import settings

    return user.groups.filter(name=settings.HUB_ADMINISTRATORS_GROUP).exists()


def has_model_perm(user: Any, model: type[models.Model], action: str) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and user.has_perm(perm_name(model, action))


def permission_parents(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(getattr(model, "permission_parents", ()))


def _parent_objects(obj: models.Model, lookup: str) -> list[models.Model]:
    field = type(obj)._meta.get_field(lookup)
    if field.many_to_many:
        return list(getattr(obj, lookup).all())
    parent = getattr(obj, lookup, None)
    return [parent] if parent is not None else []


def has_object_perm(user: Any, obj: models.Model, action: str) -> bool:
    """Model-level permission, an object-level grant through guardian, or either on a parent."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    name = perm_name(type(obj), action)
    if user.has_perm(name) or user.has_perm(name, obj):
        return True
    return any(
        has_object_perm(user, parent, action)
        for lookup in permission_parents(type(obj))
        for parent in _parent_objects(obj, lookup)
    )


def creatable_under(model: type[models.Model]) -> tuple[str, ...]:
    """The foreign-key parents whose administrators (``change``) may add a ``model`` under them."""
    return tuple(
        lookup for lookup in permission_parents(model) if not model._meta.get_field(lookup).many_to_many
    )


def may_change_all(user: Any, model: type[models.Model]) -> bool:
    """Whether ``user`` may change every object of ``model`` (no per-object check needed)."""
    return has_model_perm(user, model, CHANGE) and bool(getattr(user, "is_active", False))


def restrict(queryset: QuerySet, user: Any, action: str = VIEW, *, owned: Q | None = None) -> QuerySet:
    """Filter ``queryset`` to the objects ``user`` may ``action`` (see the module docstring).

    The directly granted objects of the model and of each ancestor are read first (one small
    query per model in the chain: grants are few), then the rows are selected with plain joins
    along the parent paths. A fixed number of queries whatever the size of the result, and no
    deep subquery nesting (SQLite's parser has a small stack).
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return queryset.none()
    model = queryset.model
    if user.has_perm(perm_name(model, action)):
        return queryset
    condition = Q(pk__in=[])
    for path, ancestor in _ancestry(model):
        if path and user.has_perm(perm_name(ancestor, action)):
            condition |= Q(**{f"{path}__isnull": False})
            continue
        granted = list(
            get_objects_for_user(
                user, perm_name(ancestor, action), klass=ancestor.objects.all(), accept_global_perms=False,
                with_superuser=False,
            ).values_list("pk", flat=True)
        )
        if granted:
            condition |= Q(**{f"{path}__pk__in" if path else "pk__in": granted})
    if owned is not None:
        condition |= owned
    if any(_crosses_many(model, path) for path, _ in _ancestry(model)):
        # Joins through a many-to-many parent would repeat rows; select the pks once instead.
        return queryset.filter(pk__in=model.objects.filter(condition).values("pk"))
    return queryset.filter(condition)


def _ancestry(model: type[models.Model], path: str = "") -> list[tuple[str, type[models.Model]]]:
    """``[("", model), ("site", Site), ("space__sites", Site), ...]``: every ancestor by path."""
    chain = [(path, model)]
    for lookup in permission_parents(model):
        parent_model = model._meta.get_field(lookup).related_model
        chain.extend(_ancestry(parent_model, f"{path}__{lookup}" if path else lookup))
    return chain


def _crosses_many(model: type[models.Model], path: str) -> bool:
    current = model
    for part in path.split("__") if path else []:
        field = current._meta.get_field(part)
        if field.many_to_many or field.one_to_many:
            return True
        current = field.related_model
    return False


def grant(perm: str | Permission, who: AbstractBaseUser | Group, obj: models.Model | None = None) -> None:
    """Grant a permission to a user or group, on one object or (obj=None) model-wide."""
    assign_perm(perm, who, obj)


def revoke(perm: str | Permission, who: AbstractBaseUser | Group, obj: models.Model) -> None:
    remove_perm(perm, who, obj)


# --- Group object permissions (the ``object_permissions`` field of /api/groups/) ---------------

def group_object_permissions(group: Group) -> list[dict[str, Any]]:
    """The object-level grants held by ``group`` as ``{model, object_pk, permission}``."""
    rows = GroupObjectPermission.objects.filter(group=group).select_related("content_type").order_by("id")
    return [
        {"model": row.content_type.model, "object_pk": row.object_pk, "permission": row.permission_id}
        for row in rows
    ]


def groups_object_permissions(groups: Iterable[Group]) -> dict[int, list[dict[str, Any]]]:
    """``group_object_permissions`` for many groups in one query (for list endpoints)."""
    result: dict[int, list[dict[str, Any]]] = {}
    rows = (
        GroupObjectPermission.objects.filter(group__in=list(groups))
        .select_related("content_type")
        .order_by("id")
    )
    for row in rows:
        result.setdefault(row.group_id, []).append(
            {"model": row.content_type.model, "object_pk": row.object_pk, "permission": row.permission_id}
        )
    return result


def resolve_model(label: str) -> ContentType | None:
    """A content type from ``app_label.model`` or a bare model name that is unambiguous."""
    label = label.strip().lower()
    if "." in label:
        app_label, _, model = label.partition(".")
        return ContentType.objects.filter(app_label=app_label, model=model).first()
    matches = list(ContentType.objects.filter(model=label)[:2])
    return matches[0] if len(matches) == 1 else None


def set_group_object_permissions(group: Group, grants: Iterable[tuple[Permission, models.Model]]) -> None:
    """Replace every object-level grant of ``group`` with ``grants`` (already validated)."""
    GroupObjectPermission.objects.filter(group=group).delete()
    for permission, obj in grants:
        assign_perm(permission, group, obj)


# --- /api/my-permissions/ ---------------------------------------------------------------------

def _permission_dict(permission: Permission) -> dict[str, Any]:
    return {
        "id": permission.id,
        "name": permission.name,
        "codename": permission.codename,
        "app_label": permission.content_type.app_label,
        "model": permission.content_type.model,
    }


def permissions_of(user: Any) -> dict[str, list[dict[str, Any]]]:
    """The four sections of ``/api/my-permissions/``: model and object grants, direct and via groups."""
    user_perms = Permission.objects.filter(user=user).select_related("content_type").order_by("id")
    group_perms = (
        Permission.objects.filter(group__user=user).select_related("content_type").distinct().order_by("id")
    )
    user_object = UserObjectPermission.objects.filter(user=user).select_related(
        "permission__content_type"
    ).order_by("id")
    group_object = GroupObjectPermission.objects.filter(group__user=user).select_related(
        "permission__content_type"
    ).order_by("id")
    return {
        "user_permissions": [_permission_dict(p) for p in user_perms],
        "group_permissions": [_permission_dict(p) for p in group_perms],
        "user_object_permissions": [
            {**_permission_dict(row.permission), "object_pk": row.object_pk} for row in user_object
        ],
        "group_object_permissions": [
            {**_permission_dict(row.permission), "object_pk": row.object_pk} for row in group_object
        ],
    }


def forget_object(obj: models.Model) -> None:
    """Remove every grant on ``obj`` (guardian keeps generic rows that do not cascade)."""
    content_type = ContentType.objects.get_for_model(obj)
    filters = {"content_type": content_type, "object_pk": str(obj.pk)}
    UserObjectPermission.objects.filter(**filters).delete()
    GroupObjectPermission.objects.filter(**filters).delete()


# --- DRF permission classes -------------------------------------------------------------------

class HubObjectPermissions(drf_permissions.BasePermission):
    """The permission check every hub viewset uses (see ``hub.api.viewsets.HubModelViewSet``).

    Which permission an action needs comes from the HTTP method (GET view, POST add, PATCH
    change, DELETE delete) unless the viewset names it in ``action_permissions``
    (``{"activate": "change", "sync": "admin"}``). ``"admin"`` means hub administrators only;
    ``"authenticated"`` means anyone signed in. Object checks let owners through when the
    viewset's ``is_owner(user, obj)`` says so and the action is in ``owner_actions``.
    """

    def _required(self, request: Request, view: APIView) -> str:
        action = getattr(view, "action", None)
        mapping = getattr(view, "action_permissions", {}) or {}
        if action in mapping:
            return mapping[action]
        return _METHOD_ACTIONS.get(request.method or "GET", CHANGE)

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        required = self._required(request, view)
        if required == "admin":
            return is_admin(user)
        if required == ADD and getattr(view, "action", None) == "create":
            if getattr(view, "owners_may_create", False):
                return True
            model = view.get_queryset().model
            if has_model_perm(user, model, ADD):
                return True
            # Whoever administers the parent may add children to it; the view checks the
            # parent named in the payload (``HubViewSetMixin.check_parent_permission``).
            return bool(creatable_under(model))
        return True

    def has_object_permission(self, request: Request, view: APIView, obj: models.Model) -> bool:
        required = self._required(request, view)
        user = request.user
        if required == "authenticated":
            return True
        if required == "admin":
            return is_admin(user)
        owner_actions = getattr(view, "owner_actions", (VIEW,))
        is_owner = getattr(view, "is_owner", None)
        if required in owner_actions and is_owner is not None and is_owner(user, obj):
            return True
        return has_object_perm(user, obj, required)


class AdminWritePermission(drf_permissions.BasePermission):
    """Any signed-in user may read; only hub administrators may write (configuration, flags)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        return request.method in drf_permissions.SAFE_METHODS or is_admin(user)


class AdminOnlyPermission(drf_permissions.BasePermission):
    """Only hub administrators, for reading too (the audit trail)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_admin(request.user)
