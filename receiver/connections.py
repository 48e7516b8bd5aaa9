"""Where the receiver's connections differ from uvicorn's: a deadline for request headers,
which uvicorn does not enforce, and a larger buffer for request bodies (``BODY_BUFFER_BYTES``).

uvicorn closes a keep-alive connection that stays idle after a response, but a client that
connects and sends nothing, or half its headers, holds the connection (and a file
descriptor) for ever. ``HeaderTimeoutProtocol`` closes a connection whose next request's
headers are not complete within ``header_timeout`` seconds of the connection opening or
of the previous response; the deadline travels in its ``ServerConfig``, which the workers of
a multi-process receiver receive whole.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("spend_receiver")

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 1000
# uvicorn stops reading a request body once 64 KB of it wait for the app, and reads on when
# the app takes them: for LiteLLM's bodies of megabytes, a pause, a copy and an event-loop
# round trip every 64 KB. Measured on 6.3 MB bodies, reading one costs the server 8 ms of CPU
# with 64 KB (and with 128 KB), 3.3 ms with 256 or 512 KB, and more again with 1 MB or more.
BODY_BUFFER_BYTES = 256 * 1024
# The key of the app's lifespan state under which it may leave a callable that is told this
# process's number of open connections whenever it changes.
OPEN_CONNECTIONS_STATE = "spend_receiver.open_connections"


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration, with the deadline for a request's headers."""

    def __init__(self, app: Any, *, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kwargs: Any):
        if header_timeout <= 0:
            raise ValueError("the header timeout must be positive")
        super().__init__(app, http=HeaderTimeoutProtocol, **kwargs)
        self.header_timeout = header_timeout


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_timeout = getattr(self.config, "header_timeout", DEFAULT_HEADER_TIMEOUT)
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()
        self._count_connections()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        # uvicorn's own, with BODY_BUFFER_BYTES for its HIGH_WATER_LIMIT (a test compares them).
        if (
            self.parser.should_upgrade() and self._should_upgrade()
        ) or self.cycle.response_complete:
            return
        self.cycle.body += body
        if len(self.cycle.body) > BODY_BUFFER_BYTES:
            self.flow.pause_reading()
        self.cycle.message_event.set()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for the next request's headers, unless a pipelined one is already running.
        if self.cycle is None or self.cycle.response_complete:
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)
        self._count_connections()

    def _count_connections(self) -> None:
        if (tell := self.app_state.get(OPEN_CONNECTIONS_STATE)) is not None:
            tell(len(self.connections))

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        if not self.transport.is_closing():
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _cancel_header_deadline(self) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            log.debug(
                "closing %s: no complete request headers in %gs", self.client, self.header_timeout
            )
            self.transport.close()
