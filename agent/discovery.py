"""Discovery on the agent: ``agent.recursive_navigate`` lists what a workflow will act on.

The hub walks a tree by fanning out, one bounded message at a time, rather than asking one task
to walk it all: a task answers **one page** (at most ``max_entries`` names, sorted) of each
directory it is given, with the page's subdirectories named separately. The hub then

* routes the page's ``entries`` to the workflow's rules (every child is an entry, directories
  included, so rules of type ``directory`` see them too),
* sends a continuation task with ``marker=next_marker`` for a directory that has more, and
* sends tasks for batches of the page's ``directories`` (their own first pages).

So no message grows with the size of a directory or of the tree, a huge directory is read a page
at a time (each page costs one name listing and a ``stat`` of its own names only), and the walk
spreads over every free discovery slot of the site.

Safety is the file browser's (``agent.actions.stat`` and ``agent.actions.list_directory``, built
on the POSIX driver): a path outside the roots, or reached through a symlink leading out of them,
is refused (``failed``); symlinks found in a directory are listed as ``symlink`` entries and never
followed, so the walk cannot leave a space or loop. Cancel flags stop a discovery task as they
stop a data task: the paths not yet listed come back ``aborted``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from agent import actions
from agent.contract import DiscoveredEntry, FileDetails, PathItem, PathOutcome

log = logging.getLogger(__name__)

DIRECTORY = "directory"
FILE = "file"


def discovered(details: Mapping[str, Any]) -> DiscoveredEntry:
    """The small discovery form of a file browser entry (``FileDetails``)."""
    kind = str(details.get("type") or "other")
    size = details.get("size") if kind == FILE else 0
    return DiscoveredEntry(path=str(details["path"]), type=cast(Any, kind),
                           size=size if isinstance(size, int) else 0, state=str(details.get("state") or ""),
                           mtime_ns=int(details.get("mtime_ns") or 0))


def _is_missing(outcome: Mapping[str, Any]) -> bool:
    return outcome.get("status") == actions.FAILED and str(outcome.get("message", "")).startswith("missing")


def recursive_navigate(ctx: actions.ActionContext, paths: Sequence[PathItem], *, max_entries: int = 1000,
                       marker: str = "", skip_missing: bool = False, jobid: object = None) -> list[PathOutcome]:
    """One outcome per input item, in order (see the module docstring).

    * a missing path: ``failed`` ("missing: ..."), or ``skipped`` with ``skip_missing`` (a tree
      that may lose paths between planning and discovery, as site sync's);
    * a path outside the roots or through an escaping symlink: ``failed`` ("refused: ...");
    * anything but a directory (file, symlink, device): ``processed`` with ``entries`` = itself;
    * a directory: ``processed`` with ``entries`` = one page of its direct children named after
      ``marker``, ``directories`` = the page's subdirectories, and ``next_marker`` when more
      follow. ``marker`` applies to every directory of the batch: a continuation is sent for one
      directory at a time.

    Raises ValueError for a bad option (the hub records the task's Failure).
    """
    # Options arrive as JSON: a wrong type fails the whole task before any path is looked at.
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise ValueError(f"max_entries must be a whole number >= 1, got {max_entries!r}")
    if not isinstance(skip_missing, bool):
        raise ValueError(f"skip_missing must be true or false, got {skip_missing!r}")
    if not isinstance(marker, str):
        raise ValueError(f"marker must be a string, got {marker!r}")

    stats = actions.stat(ctx, paths, jobid=jobid)
    results: list[PathOutcome | None] = [None] * len(stats)
    directories: list[int] = []
    for index, outcome in enumerate(stats):
        if outcome["status"] != actions.PROCESSED:
            if skip_missing and _is_missing(outcome):
                results[index] = actions.outcome(outcome["path"], actions.SKIPPED,
                                                 "missing: skipped (skip_missing)")
            else:
                results[index] = outcome
            continue
        entry = cast(FileDetails, outcome["entry"])
        if entry["type"] == DIRECTORY:
            directories.append(index)
            continue
        found = discovered(entry)
        results[index] = actions.outcome(outcome["path"], actions.PROCESSED, entries=[found], size=found["size"])

    if directories:
        pages = actions.list_directory(ctx, [paths[index] for index in directories], max_items=max_entries,
                                       marker=marker, jobid=jobid)
        for index, page in zip(directories, pages, strict=True):
            if page["status"] != actions.PROCESSED:
                # Gone or swapped for something else between the stat and the listing, or cancelled.
                results[index] = (actions.outcome(page["path"], actions.SKIPPED, "missing: skipped (skip_missing)")
                                  if skip_missing and _is_missing(page) else page)
                continue
            children = [discovered(child) for child in page.get("entries", [])]
            results[index] = actions.outcome(
                page["path"], actions.PROCESSED, entries=children,
                directories=[child["path"] for child in children if child["type"] == DIRECTORY],
                next_marker=page.get("next_marker"),
            )
    done = [result for result in results if result is not None]
    assert len(done) == len(paths)
    log.debug("recursive_navigate job=%s: %d path(s), %d directory page(s)", jobid, len(paths), len(directories))
    return done
