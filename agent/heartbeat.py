"""Heartbeats: the node tells the hub, every few seconds, that it is alive and which queues it serves.

The hub creates or updates the node and its queues from each beat (``sites.services.nodes``)
and counts a node online while its last beat is recent (``node_health_last_heartbeat_interval``,
120 s by default), so the interval must stay well below that. The interval is the hub's
``agent:heartbeat_interval`` site setting once one was pushed, else the configuration's.

A beat that cannot be published (broker down) is logged and the loop carries on: the node looks
offline on the hub until the broker is back, which is the truth.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.contract import Heartbeat, HubTask

logger = logging.getLogger(__name__)

Send = Callable[[str, dict[str, Any]], None]  # (hub task name, kwargs) -> publish


def make_beat(*, site: str, node: str, queues: list[str], info: dict[str, Any] | None = None) -> Heartbeat:
    beat = Heartbeat(site=site, node=node, queues=list(queues), sent_at=datetime.now(UTC).isoformat())
    if info:
        beat["info"] = info
    return beat


class HeartbeatLoop:
    """Sends a beat at once, then every ``interval()`` seconds until ``stop()``.

    ``interval`` is a callable so a pushed ``agent:heartbeat_interval`` takes effect at the next
    beat; ``on_beat`` runs before each beat (the agent applies pushed settings there).
    """

    def __init__(
        self,
        send: Send,
        *,
        site: str,
        node: str,
        queues: list[str],
        interval: Callable[[], float],
        info: Callable[[], dict[str, Any]] | None = None,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._site, self._node, self._queues = site, node, list(queues)
        self._interval = interval
        self._info = info or (lambda: {"pid": os.getpid()})
        self._on_beat = on_beat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def beat_once(self) -> bool:
        """Publish one beat; False (logged) when the broker refused it."""
        if self._on_beat is not None:
            try:
                self._on_beat()
            except Exception:  # noqa: BLE001 - a settings hiccup must not stop the heartbeat
                logger.exception("applying stored settings before a heartbeat failed")
        beat = make_beat(site=self._site, node=self._node, queues=self._queues, info=self._info())
        try:
            self._send(HubTask.HEARTBEAT, {"beat": dict(beat)})
        except Exception as exc:  # noqa: BLE001 - any broker failure: try again next time
            logger.warning("heartbeat not sent: %s", exc)
            return False
        self.sent += 1
        logger.debug("heartbeat sent (%d)", self.sent)
        return True

    def run(self) -> None:
        while not self._stop.is_set():
            self.beat_once()
            self._stop.wait(max(0.5, float(self._interval())))

    def start(self) -> HeartbeatLoop:
        self._thread = threading.Thread(target=self.run, name="agent-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
