"""The baseline of the receiver benchmark: read the whole body, answer 200, nothing else.

It runs on exactly the server stack ``spend-receiver`` uses (uvicorn with uvloop and
httptools, no access log), so the ratio receiver/baseline isolates the receiver's own work
(parse, project, write, fsync) from the cost of moving the bytes over HTTP.

Run: ``python -m benchmarks.baseline_server --port 4013``, or from a benchmark
``BaselineProcess(log_path).start()``.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks import REPO_ROOT
from receiver.cli import serve
from tests.receiving import free_port

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

OK_BODY = b'{"ok":true}'


async def read_body(receive: Receive) -> bytes | None:
    """The request body, collected the way the receiver collects it; None if the client left."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def baseline_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Any request: read its body, answer 200 with a tiny JSON body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if await read_body(receive) is None:
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(OK_BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": OK_BODY})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Read-the-body-and-answer-200 baseline server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(baseline_app, args.host, args.port, log_level="warning")  # the receiver's own stack


class BaselineProcess:
    """This server on a free loopback port, its log kept in ``log_path``; the same
    ``start``/``stop``/``kill`` as ``tests.receiving.ReceiverProcess``."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> BaselineProcess:
        command = [sys.executable, "-m", "benchmarks.baseline_server", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"baseline server exited: {self.log_path.read_text()}")
            if _answers_http(self.port):
                return self
            time.sleep(0.05)
        self.kill()
        raise TimeoutError("baseline server did not answer in time")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful) and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _answers_http(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


if __name__ == "__main__":
    main()
