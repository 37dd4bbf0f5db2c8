"""The estate's routes under /api/ (paths and trailing slashes as in the reference)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from sites.api.views import catalog, sites, spaces, targets

_AREAS = (sites, spaces, targets, catalog)

router = SimpleRouter()
for _area in _AREAS:
    for prefix, viewset, basename in _area.routes:
        router.register(prefix, viewset, basename=basename)

urlpatterns = [pattern for area in _AREAS for pattern in area.urlpatterns] + router.urls
