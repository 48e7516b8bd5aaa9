"""The baselines of the receiver benchmark, on exactly the receiver's server stack.

``body``: read the whole body and answer 200, nothing else. ``parse``: read the whole body,
parse it with the standard library's ``json.loads`` and answer 200. Both run on uvicorn with
uvloop and httptools and no access log, with as many worker processes as the receiver they
are compared with, so the ratios receiver/baseline isolate the receiver's own work (decode,
project, write, fsync) from the cost of moving the bytes over HTTP (``body``), and show what
the receiver does against a server that only parses a body the obvious way (``parse``).

Run: ``python -m benchmarks.baseline_server --port 4013 [--parse] [--workers N]``, or from a
benchmark ``BaselineProcess(log_path, parse=..., workers=...).start()``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks import REPO_ROOT
from receiver.cli import serve
from tests.receiving import ServerProcess, free_port

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


async def _serve_request(scope: dict[str, Any], receive: Receive, send: Send, parse: bool) -> None:
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
    body = await read_body(receive)
    if body is None:
        return
    if parse and scope["method"] == "POST":  # not a health check's empty body
        json.loads(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(OK_BODY)),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": OK_BODY})


async def body_only_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Any request: read its body, answer 200 with a tiny JSON body."""
    await _serve_request(scope, receive, send, parse=False)


async def parse_only_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Any request: read its body, ``json.loads`` it, answer 200 with a tiny JSON body."""
    await _serve_request(scope, receive, send, parse=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Baseline servers of the receiver benchmark.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parse", action="store_true", help="json.loads every body")
    parser.add_argument("--workers", type=int, default=1, help="processes (1)")
    args = parser.parse_args(argv)
    app = parse_only_app if args.parse else body_only_app
    # The receiver's own stack; /healthz is any request, answered 200. Each worker's startup
    # is logged, so that a benchmark knows when all of them serve.
    serve(app, args.host, args.port, log_level="info", workers=args.workers)


class BaselineProcess(ServerProcess):
    """A baseline server on a free loopback port, its output kept in ``log_path``."""

    def __init__(self, log_path: Path, parse: bool = False, workers: int = 1) -> None:
        self.name = "parse-only baseline" if parse else "body-only baseline"
        port = free_port()
        command = [sys.executable, "-m", "benchmarks.baseline_server", "--port", str(port)]
        command += ["--workers", str(workers)] + (["--parse"] if parse else [])
        super().__init__(command, port, log_path, cwd=REPO_ROOT)
        self.workers = workers

    def ready(self) -> bool:
        """Every worker has started (uvicorn logs each one's startup)."""
        return self.log_path.read_text().count("Application startup complete.") >= self.workers


if __name__ == "__main__":
    main()
