"""Peak memory of a ``page_size=0`` listing: streamed (ours) against DRF's whole-list response.

Both sides serve the same rows of /api/users/ through the same serializer. The baseline is what
DRF does for an unpaginated list: serialise everything into one list, render it into one body.
Ours streams chunks of 2000. Memory is Python's traced allocation peak (tracemalloc) while the
whole response body is produced and consumed.

    .venv/bin/python bench/stream_memory.py --rows 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    os.environ["HUB_VAR_DIR"] = str(workdir)
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ["THROTTLE_USER"] = "none"
    os.environ["DJANGO_SETTINGS_MODULE"] = "hub.settings"

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from rest_framework.renderers import JSONRenderer
    from rest_framework.request import Request
    from rest_framework.test import APIClient, APIRequestFactory

    from hub.api.serializers.accounts import UserSerializer
    from hub.api.views.accounts import UserViewSet

    call_command("migrate", verbosity=0)
    User = get_user_model()
    admin = User.objects.create_user("bench-admin", password="x")
    admin.groups.add(Group.objects.get(name="Administrators"))
    def add_users(up_to: int) -> None:
        have = User.objects.count() - 1
        started = time.monotonic()
        User.objects.bulk_create(
            [User(username=f"user{i:07d}", email=f"u{i}@example.org") for i in range(have, up_to)], batch_size=5000
        )
        print(f"{up_to} users ready ({time.monotonic() - started:.1f}s)")

    client = APIClient()
    client.force_authenticate(admin)

    def streamed() -> int:
        response = client.get("/api/users/", {"page_size": 0})
        return sum(len(chunk) for chunk in response.streaming_content)

    def whole_list() -> int:
        request = Request(APIRequestFactory().get("/api/users/"))
        queryset = UserViewSet.queryset.all()
        data = {"count": queryset.count(), "next": None, "previous": None,
                "results": UserSerializer(queryset, many=True, context={"request": request}).data}
        return len(JSONRenderer().render(data))

    def measure(name: str, run) -> int:
        tracemalloc.start()
        started = time.monotonic()
        size = run()
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{name:34s} body {size / 1e6:7.1f} MB  peak {peak / 1e6:7.1f} MB  {elapsed:6.1f}s")
        return peak

    small = max(args.rows // 10, 1)
    add_users(small)
    streamed_small = measure(f"streamed page_size=0, {small} rows", streamed)
    add_users(args.rows)
    streamed_large = measure(f"streamed page_size=0, {args.rows} rows", streamed)
    baseline = measure(f"baseline DRF whole list, {args.rows}", whole_list)
    print(f"flatness: streamed peak at {args.rows} rows / at {small} rows = {streamed_large / streamed_small:.2f}")
    print(f"ratio: baseline peak / streamed peak at {args.rows} rows = {baseline / streamed_large:.1f}x")


if __name__ == "__main__":
    main()
