"""``spend-receiver``: serve the LiteLLM ``generic_api`` callback on uvicorn.

``--workers N`` (default: one per core) runs N processes on the one port, uvicorn's own
multi-process mode: the parent binds the socket and supervises the workers (it restarts one
that dies), each worker accepts connections, decodes and lands its requests with a landing
writer of its own (writer id ``<hostname>-<pid>``), and SIGTERM to the parent drains every
worker before it exits. ``--workers 1`` is one process, as the receiver always was.

Tokens come from the environment only (``SPEND_WEBHOOK_TOKENS``), never from the command
line, where ``ps`` would show them to every user of the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from receiver.app import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    ReceiverApp,
    ReceiverConfig,
    default_writer_id,
)
from receiver.auth import TOKENS_ENV, parse_tokens
from receiver.connections import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ServerConfig,
)
from receiver.heartbeat import DEFAULT_HEARTBEAT_SECONDS
from resources.landing_record import attribution_header_map
from resources.storage import StorageError

DEFAULT_PORT = 4012


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="spend-receiver",
        description="Land LiteLLM generic_api callback events durably in the landing zone.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 4012)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes serving the port, each with its own landing writer (default: one per "
        f"core, {os.cpu_count() or 1} here); 1 runs a single process",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("SPEND_DATA_DIR", "./data"),
        help="storage root of the landing zone: a folder or an s3://, gs:// or az:// URL "
        "(default $SPEND_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help=f"accept callbacks without a bearer token (otherwise {TOKENS_ENV} is required)",
    )
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULT_MAX_BODY_BYTES / 2**20,
        help="largest request body, also after gzip inflation (default 20)",
    )
    parser.add_argument(
        "--attribution-headers",
        default=os.environ.get("SPEND_ATTRIBUTION_HEADERS"),
        help="request headers to keep, comma-separated; 'x-department=x-cost-center' lands "
        "x-cost-center as x-department (default x-department,x-team,x-agent,x-litellm-tags; "
        "env SPEND_ATTRIBUTION_HEADERS)",
    )
    parser.add_argument(
        "--writer-id",
        default=None,
        help="name prefix of this receiver's files (default <hostname>-<pid>; with several "
        "workers each adds -<its pid>)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        help="seconds a connection may take to send a request's headers, from connecting or "
        f"from the previous response, before it is closed (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        help="seconds a request may take to send its whole body before it is answered 408 "
        f"(default {DEFAULT_BODY_TIMEOUT:g})",
    )
    parser.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=DEFAULT_KEEP_ALIVE_TIMEOUT,
        help="seconds an idle keep-alive connection stays open after a response "
        f"(default {DEFAULT_KEEP_ALIVE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="open connections (idle ones included) of a worker above which a new request is "
        f"answered 503 (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=DEFAULT_HEARTBEAT_SECONDS,
        help="how often the receiver rewrites landing/_heartbeat/<writer-id>.json, which tells "
        f"the pipeline it is up and can write (default {DEFAULT_HEARTBEAT_SECONDS:g})",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser.parse_args(argv)


def build_app(args: argparse.Namespace, environ: dict[str, str]) -> ReceiverApp:
    """The receiver, or ``SystemExit`` saying what is wrong with its configuration."""
    tokens = parse_tokens(environ.get(TOKENS_ENV))
    if not tokens and not args.no_auth:
        raise SystemExit(
            f"spend-receiver: {TOKENS_ENV} is empty. Set it to the bearer token(s) LiteLLM "
            "sends (comma-separated), or pass --no-auth to accept unauthenticated callbacks."
        )
    if args.workers < 1:
        raise SystemExit("spend-receiver: --workers must be at least 1")
    try:
        config = ReceiverConfig(
            data_dir=args.data_dir,
            tokens=tokens,
            require_auth=not args.no_auth,
            max_body_bytes=int(args.max_body_mb * 2**20),
            header_map=attribution_header_map(args.attribution_headers),
            writer_id=worker_writer_id(args.writer_id, args.workers),
            body_timeout=args.body_timeout,
            heartbeat_seconds=args.heartbeat_seconds,
        )
        return ReceiverApp(config)
    except (ValueError, StorageError) as exc:
        raise SystemExit(f"spend-receiver: {exc}") from None


def worker_writer_id(prefix: str | None, workers: int) -> str:
    """This process's writer id: ``--writer-id`` as given for one process, else with the
    process's pid, so that no two workers (or receivers) ever name a file alike."""
    if prefix is None:
        return default_writer_id()
    return prefix if workers == 1 else f"{prefix}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerApp:
    """What each worker process calls (uvicorn's app factory) to build its receiver: the
    configuration the parent checked, with the worker's own writer id and the folder where
    the workers share their metrics."""

    config: ReceiverConfig
    writer_prefix: str | None
    workers: int
    metrics_dir: str
    log_level: str

    def __call__(self) -> ReceiverApp:
        configure_logging(self.log_level)
        writer_id = worker_writer_id(self.writer_prefix, self.workers)
        return ReceiverApp(replace(self.config, writer_id=writer_id, metrics_dir=self.metrics_dir))


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    app = build_app(args, dict(os.environ))  # in the parent too: a bad setting fails here
    configure_logging(args.log_level)
    limits = {
        "header_timeout": args.header_timeout,
        "keep_alive_timeout": args.keep_alive_timeout,
        "max_connections": args.max_connections,
    }
    if args.workers == 1:
        serve(app, args.host, args.port, args.log_level, **limits)
        return
    with tempfile.TemporaryDirectory(prefix="spend-receiver-metrics-") as metrics_dir:
        factory = WorkerApp(app.config, args.writer_id, args.workers, metrics_dir, args.log_level)
        serve(
            factory,
            args.host,
            args.port,
            args.log_level,
            workers=args.workers,
            factory=True,
            **limits,
        )


def serve(
    app: Any,
    host: str,
    port: int,
    log_level: str = "info",
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    workers: int = 1,
    factory: bool = False,
) -> None:
    """Serve an ASGI app the receiver's way (the throughput benchmark's baselines use it too).

    ``factory``: ``app`` is called (in each worker) to build the app. With ``workers`` > 1,
    ``app`` is pickled to each worker process, and the parent supervises the workers until
    SIGTERM or SIGINT, which it passes on to each, then waits for all of them to finish."""
    if keep_alive_timeout <= 0 or max_connections <= 0:
        raise SystemExit("spend-receiver: timeouts and the connection limit must be positive")
    try:
        config = ServerConfig(
            app,
            header_timeout=header_timeout,
            host=host,
            port=port,
            loop="uvloop",
            timeout_keep_alive=keep_alive_timeout,
            limit_concurrency=max_connections,
            lifespan="on",
            access_log=False,
            server_header=False,
            log_level=log_level,
            timeout_graceful_shutdown=30,
            workers=workers,
            factory=factory,
            # A worker that does not answer the parent's ping in time is killed and replaced;
            # a busy worker under load can be slow to answer, a hung one is still found.
            timeout_worker_healthcheck=30,
        )
    except ValueError as exc:
        raise SystemExit(f"spend-receiver: {exc}") from None
    if workers == 1:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    Multiprocess(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    main()
