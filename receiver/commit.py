"""Group commit: one write + fsync for every batch that arrived while the last one ran.

Request handlers hand their projected batch to a single writer thread and await it. The
thread takes everything queued, writes it as one ``LandingBatch`` (one file per event
hour), fsyncs, and only then releases the waiting requests, which answer 2xx. Under load
the fsync cost is shared by all concurrent requests; at rest a batch is written at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass

from receiver.metrics import ReceiverMetrics
from resources.landing import LandingZone
from resources.landing_record import LandingBatch

log = logging.getLogger("spend_receiver")


@dataclass
class _Pending:
    batch: LandingBatch
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class GroupCommitter:
    """The receiver's only writer to the landing zone."""

    def __init__(self, zone: LandingZone, metrics: ReceiverMetrics) -> None:
        self.zone = zone
        self.metrics = metrics
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="landing-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Write what is queued, then end the writer thread."""
        self._queue.put(None)
        self._thread.join()

    async def commit(self, batch: LandingBatch) -> None:
        """Return once ``batch`` is durably on disk; raise if it could not be written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Pending(batch, future, loop))
        await future

    def _run(self) -> None:
        self.metrics.writer_up = 1
        try:
            self._serve_queue()
        finally:
            self.metrics.writer_up = 0

    def _serve_queue(self) -> None:
        stopping = False
        while not stopping:
            group = [self._queue.get()]
            while True:  # take everything that queued up behind the last commit
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = None in group
            pending = [p for p in group if p is not None]
            if pending:
                self._write(pending)

    def _write(self, pending: list[_Pending]) -> None:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            result = self.zone.write_batch(LandingBatch.merge([p.batch for p in pending]))
        except Exception as exc:  # the disk said no: every waiting request must hear it
            log.error("landing write failed: %s: %s", type(exc).__name__, exc)
            error = exc
        else:
            self.metrics.commits += 1
            self.metrics.landed_bytes += result.bytes
            self.metrics.observe_commit(time.perf_counter() - started)
        for p in pending:
            p.loop.call_soon_threadsafe(_resolve, p.future, error)
