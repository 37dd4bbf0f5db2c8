"""The workflow engine's routes under /api/ (paths and trailing slashes as in the reference)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from workflows.api.views import definitions, jobs, launch

_AREAS = (definitions, jobs, launch)

router = SimpleRouter()
for _area in _AREAS:
    for prefix, viewset, basename in _area.routes:
        router.register(prefix, viewset, basename=basename)

urlpatterns = [pattern for area in _AREAS for pattern in area.urlpatterns] + router.urls
