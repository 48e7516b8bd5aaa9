"""The receiver's heartbeat: while its landing writer runs, it rewrites
``landing/_heartbeat/<writer-id>.json`` every ``interval_s`` seconds (60 by default).

The pipeline's ``sources_answering`` check reads these to tell a quiet hour (no landing
files, fresh heartbeat) from a silent receiver (stopped, crashed, or unable to write to the
storage root: its heartbeat goes stale). A thread of its own, so a slow store never delays a
group commit, and a failed heartbeat is only logged: the callbacks' own writes say 503.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from resources.landing import LandingZone
from resources.storage import StorageError

log = logging.getLogger("spend_receiver")

DEFAULT_HEARTBEAT_SECONDS = 60.0
STOP_WAIT_S = 5.0  # a heartbeat stuck on an unreachable store is not waited for longer


class HeartbeatWriter:
    """Writes the heartbeat now, then every ``interval_s`` while ``alive()`` holds."""

    def __init__(self, zone: LandingZone, interval_s: float, alive: Callable[[], bool]) -> None:
        if interval_s <= 0:
            raise ValueError("the heartbeat interval must be positive")
        self.zone, self.interval_s, self.alive = zone, interval_s, alive
        self.started_at = datetime.now(timezone.utc)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=STOP_WAIT_S)

    def _run(self) -> None:
        failing = False
        while True:
            if self.alive():
                try:
                    self.zone.write_heartbeat(self.started_at)
                except (OSError, StorageError) as exc:
                    if not failing:  # once per outage, not once a minute
                        log.warning("heartbeat not written: %s", exc)
                    failing = True
                else:
                    if failing:
                        log.info("heartbeat written again")
                    failing = False
            if self._stopping.wait(self.interval_s):
                return
