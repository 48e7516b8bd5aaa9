"""The baseline of the receiver benchmark: read the whole body, answer 200, nothing else.

It runs on exactly the server stack ``spend-receiver`` uses (uvicorn with uvloop and
httptools, no access log), so the ratio receiver/baseline isolates the receiver's own work
(parse, project, write, fsync) from the cost of moving the bytes over HTTP.

Run: ``python -m benchmarks.baseline_server --port 4013``, or from a benchmark
``BaselineProcess(log_path).start()``.
"""

from __future__ import annotations

import argparse
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


class BaselineProcess(ServerProcess):
    """This server on a free loopback port, its output kept in ``log_path``."""

    name = "baseline server"

    def __init__(self, log_path: Path) -> None:
        port = free_port()
        command = [sys.executable, "-m", "benchmarks.baseline_server", "--port", str(port)]
        super().__init__(command, port, log_path, cwd=REPO_ROOT)


if __name__ == "__main__":
    main()
