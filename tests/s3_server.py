"""A real S3 API on 127.0.0.1 for tests: moto's server (``moto[server]``, what s3fs and pandas
test against) in a process of its own, reached through a TCP relay that a test can cut to take
the store away (``outage``) and restore, while moto keeps every object it holds.

    with S3Server() as s3:
        s3.create_bucket("spend")
        env = s3.env()  # AWS_ENDPOINT_URL, AWS_REGION and keys for this server
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pyarrow.fs as pafs

from tests.receiving import free_port

REGION = "us-east-1"
START_TIMEOUT_S = 60.0
RELAY_BUFFER = 256 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # moto colours its request log


class Relay:
    """Forwards TCP connections from its own port to the server's, until cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a store that went away."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for connection in self._connections:
                _close(connection)
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)  # an idle keep-alive connection waits as long as it likes
            with self._lock:
                self._connections |= {client, upstream}
            finished = threading.Barrier(2, action=lambda c=client, u=upstream: self._drop(c, u))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink, finished), daemon=True
                ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, finished: threading.Barrier
    ) -> None:
        """One direction; at its end only that direction is closed (a half-close), so the
        other's last bytes still arrive. Both ended: both sockets are closed."""
        try:
            while data := source.recv(RELAY_BUFFER):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            finished.wait(timeout=600)
        except threading.BrokenBarrierError:
            pass

    def _drop(self, *connections: socket.socket) -> None:
        for connection in connections:
            _close(connection)
            with self._lock:
                self._connections.discard(connection)


def _close(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()


class S3Server:
    """moto's S3 server on a free loopback port, behind a relay (see the module docstring)."""

    def __init__(self) -> None:
        self.server_port = free_port()
        self.relay = Relay(self.server_port)
        self._process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.relay.port}"

    def env(self, direct: bool = False) -> dict[str, str]:
        """The standard AWS settings that point an S3 client at this server: through the
        relay (which ``outage`` cuts), or ``direct``ly (what a benchmark measures)."""
        endpoint = f"http://127.0.0.1:{self.server_port}" if direct else self.endpoint
        return {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "spend-test",
            "AWS_SECRET_ACCESS_KEY": "spend-test-secret",
        }

    def __enter__(self) -> S3Server:
        environ = {**os.environ, **self.env(), "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        # moto logs every request: to a file, never a pipe nobody drains (a full pipe would
        # block its request threads and hang every client).
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.server_port)],
            env=environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.server_port}/", timeout=2)
                break
            except httpx.TransportError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self._log.seek(0)
                    error = self._log.read().decode(errors="replace")[-2000:]
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"moto's S3 server did not start: {error}") from None
                time.sleep(0.1)
        self.relay.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.relay.cut()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
            self._log.close()

    def filesystem(self) -> pafs.S3FileSystem:
        """An S3 client of this server, for a test's own look at the bucket."""
        return pafs.S3FileSystem(
            region=REGION,
            endpoint_override=f"127.0.0.1:{self.server_port}",
            scheme="http",
            access_key=self.env()["AWS_ACCESS_KEY_ID"],
            secret_key=self.env()["AWS_SECRET_ACCESS_KEY"],
            allow_bucket_creation=True,
        )

    def create_bucket(self, name: str) -> str:
        self.filesystem().create_dir(name)
        return f"s3://{name}"

    def objects(self, bucket: str) -> dict[str, int]:
        """Every object of ``bucket``: key → size."""
        selector = pafs.FileSelector(bucket, recursive=True)
        infos = self.filesystem().get_file_info(selector)
        return {
            info.path[len(bucket) + 1 :]: info.size
            for info in infos
            if info.type == pafs.FileType.File
        }

    def requests(self, method: str, path: str) -> int:
        """How many ``method`` requests for ``path`` (``/bucket/key``) the server has logged."""
        self._log.seek(0)
        text = _ANSI.sub("", self._log.read().decode(errors="replace"))
        return text.count(f'"{method} {path} HTTP/')

    @contextmanager
    def outage(self) -> Iterator[None]:
        """The store is unreachable inside the block; its objects are all there after."""
        self.relay.cut()
        try:
            yield
        finally:
            self.relay.open()
