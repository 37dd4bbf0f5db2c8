"""The hub platform's routes under /api/ (paths and trailing slashes as in the reference)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from hub.api.views.accounts import GroupViewSet, MyPermissionsView, PermissionViewSet, UserViewSet
from hub.api.views.auth import (
    ClientKeyViewSet,
    PublicKeyView,
    TokenObtainView,
    TokenRefreshHubView,
    TokenVerifyView,
)
from hub.api.views.config import (
    AuditEventViewSet,
    ConfigurationView,
    FeatureViewSet,
    GlobalSettingsSyncView,
    GlobalSettingsView,
)

router = SimpleRouter()
router.register("auth/clientkeys", ClientKeyViewSet, basename="clientkey")
router.register("users", UserViewSet, basename="user")
router.register("groups", GroupViewSet, basename="group")
router.register("permissions", PermissionViewSet, basename="permission")
router.register("features", FeatureViewSet, basename="feature")
router.register("audit", AuditEventViewSet, basename="auditevent")

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", TokenRefreshHubView.as_view(), name="token-refresh"),
    path("auth/token/verify/", TokenVerifyView.as_view(), name="token-verify"),
    path("auth/token/publickey/", PublicKeyView.as_view(), name="token-publickey"),
    path("my-permissions/", MyPermissionsView.as_view(), name="my-permissions"),
    path("configurations/", ConfigurationView.as_view(), name="configurations"),
    path("settings/", GlobalSettingsView.as_view(), name="settings"),
    path("settings/sync/", GlobalSettingsSyncView.as_view(), name="settings-sync"),
    *router.urls,
]
