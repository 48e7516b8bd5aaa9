"""The shared part of the tests' fake HTTP APIs: a threaded keep-alive server on 127.0.0.1
that stops promptly, closing its open connections and releasing handlers that wait."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

F = TypeVar("F", bound="FakeServer")


def shutdown_socket(connection: socket.socket) -> None:
    """Shut both directions of ``connection``; one already gone is no error."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class FakeServer:
    """Serves ``handler`` on ``url`` from ``start`` (or ``with``) until ``stop``.

    ``_lock`` guards the connection set and is there for a subclass's own state too;
    ``_stopping`` is set by ``stop`` so that a handler waiting on it returns at once.
    """

    def __init__(self, handler: type[FakeHandler[Any]]) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: FakeHTTPServer[Self] | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._stopping.clear()
        self._server = FakeHTTPServer(("127.0.0.1", 0), self._handler)  # port 0: the OS picks
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Release waiting handlers, close open connections, stop within ``timeout``."""
        if self._server is None:
            return
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            shutdown_socket(connection)
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)


class FakeHTTPServer(ThreadingHTTPServer, Generic[F]):
    daemon_threads = True  # a handler still holding at shutdown does not hold the process
    fake: F


class FakeHandler(BaseHTTPRequestHandler, Generic[F]):
    """Keep-alive, quiet, and known to its fake for as long as its connection is open."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a real server's pooled connections
    timeout = 30  # an idle keep-alive connection is closed after this
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: FakeHTTPServer[F]

    def setup(self) -> None:
        super().setup()
        self.server.fake._connection_opened(self.connection)

    def finish(self) -> None:
        self.server.fake._connection_closed(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # quiet tests; requests are recorded instead
