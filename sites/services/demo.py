"""The demo estate ``make run`` starts with: one site, a space on it and a folder target.

Everything lives under the hub's ``HUB_VAR_DIR`` (``var/`` by default), so a fresh checkout
shows a working site without any storage to set up::

    var/demo/data/            the demo agent's root (``python -m agent run --root``)
    var/demo/data/projects/   space "demo" (the agent creates the directory when ordered)
    var/demo/objects/         bucket "demo-objects", a POSIX folder, behind target "demo-folder"

The estate is made through the same use cases as the API (``create_site``, ``create_space``,
``create_target``), so the space and target orders go to the site's queue and wait there until
the demo agent starts and confirms them. A real estate is never touched: as soon as a site other
than ``demo`` exists, nothing is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from sites.models import Bucket, ExternalTarget, Site, Space
from sites.services.sites import create_site
from sites.services.spaces import Placement, create_space
from sites.services.targets import create_target

DEMO_SITE = "demo"
DEMO_SPACE = "demo"
DEMO_BUCKET = "demo-objects"
DEMO_TARGET = "demo-folder"


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps its files, all under ``<var>/demo``."""

    data: Path
    space: Path
    objects: Path

    @classmethod
    def under(cls, var_dir: Path) -> DemoPaths:
        base = Path(var_dir).resolve() / "demo"
        return cls(data=base / "data", space=base / "data" / "projects", objects=base / "objects")


@dataclass
class DemoReport:
    """What ``ensure_demo_estate`` did: lines for the operator, or why it did nothing."""

    made: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    refused: str = ""


def demo_site() -> Site | None:
    """The demo site, if there is one."""
    return Site.objects.filter(name=DEMO_SITE).first()


@transaction.atomic
def ensure_demo_estate(actor: Any, *, var_dir: Path) -> DemoReport:
    """Make whatever part of the demo estate is missing (idempotent); nothing when a real one exists.

    ``actor`` is recorded on the orders (None: the system, as for ``make run``). The orders are
    published when the transaction commits.
    """
    report = DemoReport()
    others = list(Site.objects.exclude(name=DEMO_SITE).order_by("name").values_list("name", flat=True)[:6])
    if others:
        names = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        report.refused = f"the estate has sites other than '{DEMO_SITE}' ({names})"
        return report

    paths = DemoPaths.under(var_dir)
    # The agent refuses a root that does not exist, and the folder driver a missing folder; the
    # space's own directory is left to the agent (that is what its CREATE_SPACE order is for).
    paths.data.mkdir(parents=True, exist_ok=True)
    paths.objects.mkdir(parents=True, exist_ok=True)

    site = demo_site()
    if site is None:
        site = create_site(actor, name=DEMO_SITE, shortcode=DEMO_SITE, label="Demo site",
                           description=f"Made by make run; its agent's root is {paths.data}")
        report.made.append(f"site '{DEMO_SITE}' (agent root {paths.data})")
    else:
        report.kept.append(f"site '{DEMO_SITE}'")

    space = Space.objects.filter(name=DEMO_SPACE).first()
    if space is None:
        space = create_space(actor, name=DEMO_SPACE, mountpoint=str(paths.space), placements=[Placement(site=site)])
        report.made.append(f"space '{DEMO_SPACE}' at {paths.space} on site '{DEMO_SITE}' (the agent creates it)")
    else:
        report.kept.append(f"space '{DEMO_SPACE}' ({space.mountpoint})")

    target = ExternalTarget.objects.filter(name=DEMO_TARGET).select_related("bucket").first()
    if target is None:
        on_site = space.placements.filter(site=site).exists()
        target = create_target(actor, {
            "name": DEMO_TARGET,
            "space": space,
            "local_file_regex": ".*",
            "available_on_sites": [site] if on_site else [],
            "bucket": {
                "name": DEMO_BUCKET,
                "label": "Demo objects folder",
                "storage_type": Bucket.StorageType.FS,
                "migration_target_folder": str(paths.objects),
            },
        })
        report.made.append(
            f"bucket '{DEMO_BUCKET}' (POSIX folder {paths.objects}) and external target '{DEMO_TARGET}' "
            f"for space '{DEMO_SPACE}'" + (f" on site '{DEMO_SITE}' (ready once the agent confirms)" if on_site else "")
        )
    else:
        report.kept.append(f"external target '{DEMO_TARGET}' (bucket '{target.bucket.name}')")
    return report
