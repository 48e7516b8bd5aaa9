"""``spend-receiver``: serve the LiteLLM ``generic_api`` callback on uvicorn.

Tokens come from the environment only (``SPEND_WEBHOOK_TOKENS``), never from the command
line, where ``ps`` would show them to every user of the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import uvicorn

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
    header_timeout_protocol,
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
        help="name prefix of this receiver's files (default <hostname>-<pid>)",
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
        help="open connections (idle ones included) above which a new request is answered "
        f"503 (default {DEFAULT_MAX_CONNECTIONS})",
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
    try:
        config = ReceiverConfig(
            data_dir=args.data_dir,
            tokens=tokens,
            require_auth=not args.no_auth,
            max_body_bytes=int(args.max_body_mb * 2**20),
            header_map=attribution_header_map(args.attribution_headers),
            writer_id=args.writer_id or default_writer_id(),
            body_timeout=args.body_timeout,
            heartbeat_seconds=args.heartbeat_seconds,
        )
        return ReceiverApp(config)
    except (ValueError, StorageError) as exc:
        raise SystemExit(f"spend-receiver: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    app = build_app(args, dict(os.environ))
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    serve(
        app,
        args.host,
        args.port,
        args.log_level,
        header_timeout=args.header_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        max_connections=args.max_connections,
    )


def serve(
    app: Any,
    host: str,
    port: int,
    log_level: str = "info",
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> None:
    """Serve an ASGI app the receiver's way (the throughput benchmark's baseline uses it too)."""
    if keep_alive_timeout <= 0 or max_connections <= 0:
        raise SystemExit("spend-receiver: timeouts and the connection limit must be positive")
    try:
        protocol = header_timeout_protocol(header_timeout)
    except ValueError as exc:
        raise SystemExit(f"spend-receiver: {exc}") from None
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=protocol,
        timeout_keep_alive=keep_alive_timeout,
        limit_concurrency=max_connections,
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level=log_level,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
