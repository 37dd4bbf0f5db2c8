"""The filesystem broker transport with atomic publishing, used by agents and the hub alike.

kombu's filesystem transport creates a message file, then serialises and writes into it; a
reader polling the folder meanwhile takes the empty or partial file (a JSONDecodeError, and the
message is lost) - most likely with the large reports and batches of data tasks. This one writes
to a dot-prefixed temporary name and renames it into place, so a reader sees a message whole or
not at all. Readers need nothing new. Select it with ``broker_transport =
"agent.transport:AtomicFilesystemTransport"`` (the hub's ``CELERY_BROKER_TRANSPORT``).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class AtomicFilesystemChannel(filesystem.Channel):
    """kombu's filesystem channel, publishing each message atomically (see the module docstring):
    written under a name no reader matches (a leading dot), then renamed to its real name."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        data = str_to_bytes(dumps(payload))
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # kombu's naming and order
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class AtomicFilesystemTransport(filesystem.Transport):
    """The filesystem transport with ``AtomicFilesystemChannel``. Readers need nothing new, so a
    hub still on kombu's transport reads these messages; the hub should publish through this
    one too (``broker_transport = "agent.app:AtomicFilesystemTransport"``)."""

    Channel = AtomicFilesystemChannel
