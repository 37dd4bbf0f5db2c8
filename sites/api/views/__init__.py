"""Estate API views, one module per area; each exposes ``routes`` and ``urlpatterns``."""
