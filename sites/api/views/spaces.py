"""Estate API views: spaces (filled in by the inventory work)."""

from __future__ import annotations

# (prefix, viewset, basename) registered on the /api/ router by sites.api.urls.
routes: list = []
# Extra paths (plain APIViews) under /api/.
urlpatterns: list = []
