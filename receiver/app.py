"""The receiver as an ASGI app: ``POST /litellm/callback``, ``GET /healthz``, ``GET /metrics``.

A callback is answered 2xx only after its events are fsync'd in the landing zone, so
LiteLLM never drops a batch we have not kept. Whatever the body, the answer is a 4xx with
the reason (the request is refused whole) or a 200 with how many events landed and how
many went to the quarantine; a 503 means the disk failed and LiteLLM may retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from receiver.auth import bearer_allowed
from receiver.commit import GroupCommitter
from receiver.connections import OPEN_CONNECTIONS_STATE
from receiver.decode import BadRequest, decode_events, gunzip
from receiver.heartbeat import DEFAULT_HEARTBEAT_SECONDS, HeartbeatWriter
from receiver.memory import settle_memory
from receiver.metrics import ReceiverMetrics
from resources.landing import LandingZone
from resources.landing_record import DEFAULT_HEADER_MAP, project_batch
from resources.storage import StorageError

log = logging.getLogger("spend_receiver")

CALLBACK_PATH = "/litellm/callback"
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 60.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def default_writer_id() -> str:
    """Unique per receiver process, so receivers sharing a landing zone never collide."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "receiver"
    return f"{host}-{os.getpid()}"


@dataclass(frozen=True)
class ReceiverConfig:
    data_dir: str  # the storage root: a local folder or an s3://, gs:// or az:// URL
    tokens: tuple[bytes, ...]
    require_auth: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_HEADER_MAP))
    writer_id: str = field(default_factory=default_writer_id)
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    # The folder the workers of a multi-process receiver share their metrics in (None: one
    # process, metrics in memory).
    metrics_dir: str | None = None

    def __post_init__(self) -> None:
        if self.require_auth and not self.tokens:
            raise ValueError("authentication is on but no token is configured")
        if self.max_body_bytes <= 0:
            raise ValueError("the body limit must be positive")
        if self.body_timeout <= 0:
            raise ValueError("the body timeout must be positive")
        if self.heartbeat_seconds <= 0:
            raise ValueError("the heartbeat interval must be positive")


class ReceiverApp:
    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.zone = LandingZone(config.data_dir, writer_id=config.writer_id)
        self.metrics = ReceiverMetrics(config.writer_id, config.metrics_dir)
        self.committer = GroupCommitter(self.zone, self.metrics)
        self.heartbeat = HeartbeatWriter(
            self.zone, config.heartbeat_seconds, alive=self.committer.alive
        )
        self._worker_header = [(b"x-receiver-worker", config.writer_id.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"])
        if route == ("POST", CALLBACK_PATH):
            await self._callback(scope, receive, send)
        elif route == ("GET", "/healthz"):  # this worker's landing writer
            alive = self.committer.alive()
            answer = {"status": "ok" if alive else "down"}
            await _respond(send, 200 if alive else 503, answer, self._worker_header)
        elif route == ("GET", "/metrics"):  # every worker's
            body = self.metrics.render().encode()
            content_type = b"text/plain; version=0.0.4; charset=utf-8"
            await _respond_bytes(send, 200, body, content_type, self._worker_header)
        elif scope["path"] in (CALLBACK_PATH, "/healthz", "/metrics"):
            await _respond(send, 405, {"error": f"method {scope['method']} not allowed"})
        else:
            await _respond(send, 404, {"error": "not found"})

    def _count_connections(self, open_connections: int) -> None:
        self.metrics.open_connections = open_connections

    def _over_share_of_connections(self) -> bool:
        """Whether this worker holds more than its share of the receiver's connections: then
        it asks the client to reconnect (``Connection: close`` on the answer), and the new
        connection goes to whichever worker accepts it. A client that keeps its connection
        (LiteLLM does, under load) would otherwise stay with the worker that first accepted
        it, and a few busy connections could all load one worker while the others idle."""
        if self.config.metrics_dir is None or self.metrics.open_connections <= 1:
            return False
        counts = self.metrics.open_connections_per_worker()
        return counts[0] > -(-sum(counts) // len(counts))  # above the ceiling of the mean

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                settle_memory()
                if isinstance(state := scope.get("state"), dict):  # the server's connections
                    state[OPEN_CONNECTIONS_STATE] = self._count_connections
                self.committer.start()
                self.heartbeat.start()
                log.info(
                    "landing to %s as writer %s; auth %s; body limit %d bytes in %gs; headers %s",
                    self.zone.root,
                    self.config.writer_id,
                    f"on ({len(self.config.tokens)} token(s))"
                    if self.config.require_auth
                    else "OFF",
                    self.config.max_body_bytes,
                    self.config.body_timeout,
                    ", ".join(f"{k}<-{v}" for k, v in self.config.header_map.items()),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.heartbeat.stop()
                self.committer.stop()
                self.metrics.close()
                log.info(
                    "landing writer stopped after %d commit(s) (writer %s)",
                    self.metrics.commits,
                    self.config.writer_id,
                )
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, answer = await self._land(scope, receive)
        except BadRequest as exc:
            status, answer = exc.status, {"error": exc.reason}
            self.metrics.rejected[_REJECT_REASONS.get(exc.status, "invalid_body")] += 1
            log.warning("refused callback from %s: %d %s", _client(scope), exc.status, exc.reason)
        except _ClientGone:
            return
        except Exception as exc:  # the receiver stays up whatever happens
            status, answer = 500, {"error": "internal error"}
            # Type and frames only: an exception message could quote the body.
            log.error(
                "callback failed: %s\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
        self.metrics.requests[status] += 1
        extra = _EXTRA_HEADERS.get(status, [])
        if status == 200 and self._over_share_of_connections():
            extra = [*extra, _RECONNECT]
        await _respond(send, status, answer, extra)

    async def _land(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        headers = dict(scope["headers"])
        if self.config.require_auth and not bearer_allowed(
            headers.get(b"authorization"), self.config.tokens
        ):
            raise BadRequest(401, "missing or invalid bearer token")
        limit = self.config.max_body_bytes
        body = await _read_body(receive, headers, limit, self.config.body_timeout)
        self.metrics.received_bytes += len(body)
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding == b"gzip":
            body = gunzip(body, limit)
        elif encoding not in (b"identity", b""):
            raise BadRequest(415, "unsupported Content-Encoding (use gzip or none)")
        batch = project_batch(decode_events(body), time.time(), self.config.header_map)
        try:
            await self.committer.commit(batch)
        except (OSError, StorageError):
            self.metrics.rejected["write_failed"] += 1
            return 503, {"error": "landing zone write failed; retry"}
        self.metrics.events_accepted += batch.landed
        self.metrics.events_quarantined += batch.quarantined
        return 200, {"accepted": batch.landed, "quarantined": batch.quarantined}


_REJECT_REASONS = {
    400: "invalid_body",
    401: "unauthorized",
    408: "body_timeout",
    413: "too_large",
    415: "encoding",
}
# A 408 closes the connection: the rest of the late body would be read as a new request.
# A 503 (the landing zone's disk or object store refused the write) says when to retry.
RETRY_AFTER_SECONDS = 5
_EXTRA_HEADERS = {
    401: [(b"www-authenticate", b"Bearer")],
    408: [(b"connection", b"close")],
    503: [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
}


_RECONNECT = (b"connection", b"close")


class _ClientGone(Exception):
    """The client hung up before sending its whole body: there is nobody to answer."""


async def _read_body(
    receive: Receive, headers: Mapping[bytes, bytes], limit: int, timeout: float
) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"body of {int(declared)} bytes is over the {limit}-byte limit")
    try:
        async with asyncio.timeout(timeout):
            return await _receive_body(receive, limit)
    except TimeoutError:
        raise BadRequest(408, f"body not received within {timeout:g}s") from None


async def _receive_body(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


async def _respond(
    send: Send, status: int, answer: dict[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(answer, separators=(",", ":")).encode()
    await _respond_bytes(send, status, body, b"application/json", extra)


async def _respond_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + list(extra)})
    await send({"type": "http.response.body", "body": body})
