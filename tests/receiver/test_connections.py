"""Stalled and idle connections against the real receiver: closed on time, never piling up."""

import json
import os
import socket
import time

import httpx
import pytest

from tests.receiving import TOKENS, ReceiverProcess
from tests.samples import LITELLM_FIXTURES

SINGLE_BODY = (LITELLM_FIXTURES / "generic_api_failure_event.json").read_bytes()
HEADER_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("connections") / "data"
    # One process: the limits are a worker's, and its file descriptors are counted.
    flags = ["--workers", "1", "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", "1"]
    with ReceiverProcess(data_dir, *flags, "--keep-alive-timeout", "0.5") as running:
        yield running


def connect(receiver) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(content_length: int) -> bytes:
    return (
        "POST /litellm/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKENS[0]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started, received = time.monotonic(), b""
    sock.settimeout(limit)
    while time.monotonic() - started < limit:
        chunk = sock.recv(65536)
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    raise AssertionError(f"still open after {limit}s")


def open_fds(receiver) -> int:
    return len(os.listdir(f"/proc/{receiver.process.pid}/fd"))


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(receiver):
    with connect(receiver) as sock:
        received, waited = read_until_closed(sock)
    assert received == b""
    assert HEADER_TIMEOUT * 0.8 <= waited < 5


def test_a_connection_that_sends_half_its_headers_is_closed(receiver):
    with connect(receiver) as sock:
        sock.sendall(b"POST /litellm/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        received, waited = read_until_closed(sock)
    assert received == b"" and waited < 5


def test_headers_sent_slowly_within_the_deadline_are_served(receiver):
    head = request_head(len(SINGLE_BODY))
    with connect(receiver) as sock:
        for start in range(0, len(head), len(head) // 3 + 1):
            sock.sendall(head[start : start + len(head) // 3 + 1])
            time.sleep(HEADER_TIMEOUT / 5)
        sock.sendall(SINGLE_BODY)
        received, _ = read_until_closed(sock)  # then idle: closed by the keep-alive timeout
    assert received.startswith(b"HTTP/1.1 200 ")
    assert json.loads(received.split(b"\r\n\r\n", 1)[1]) == {"accepted": 1, "quarantined": 0}


def test_a_body_that_stalls_is_answered_408_and_the_connection_closed(receiver):
    with connect(receiver) as sock:
        sock.sendall(request_head(len(SINGLE_BODY)) + SINGLE_BODY[:10])
        received, waited = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in received.lower()
    assert json.loads(received.split(b"\r\n\r\n", 1)[1]) == {"error": "body not received within 1s"}
    assert waited < 5
    assert receiver.metrics()['spend_receiver_requests_rejected_total{reason="body_timeout"}'] >= 1


def test_a_keep_alive_connection_is_closed_once_idle(receiver):
    with connect(receiver) as sock:
        sock.sendall(request_head(len(SINGLE_BODY)) + SINGLE_BODY)
        received, waited = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" not in received.lower()  # kept alive, then closed idle
    assert 0.4 <= waited < 5


def test_hundreds_of_stalled_connections_are_all_closed(receiver):
    baseline = open_fds(receiver)
    sockets = [connect(receiver) for _ in range(300)]
    try:
        for n, sock in enumerate(sockets):
            sock.sendall(b"POST /litellm/callback HTTP/1.1\r\n" if n % 2 else b"")
        deadline = time.monotonic() + 10
        while open_fds(receiver) > baseline + 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_fds(receiver) <= baseline + 5
        assert httpx.get(f"{receiver.url}/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        for sock in sockets:
            sock.close()


def test_over_the_connection_limit_a_request_is_answered_503(tmp_path):
    flags = ["--workers", "1", "--max-connections", "5", "--header-timeout", "30"]
    with ReceiverProcess(tmp_path / "data", *flags) as limited:
        idle = [connect(limited) for _ in range(5)]
        try:
            refused = httpx.post(
                limited.callback_url, content=SINGLE_BODY, headers=limited.auth, timeout=10
            )
        finally:
            for sock in idle:
                sock.close()
        assert refused.status_code == 503
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the closed sockets leave the server's count
            answer = httpx.post(
                limited.callback_url, content=SINGLE_BODY, headers=limited.auth, timeout=10
            )
            if answer.status_code != 503:
                break
            time.sleep(0.1)
        assert answer.status_code == 200


def test_the_body_buffer_is_uvicorns_own_flow_control_with_a_larger_limit():
    import inspect

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from receiver.connections import HeaderTimeoutProtocol

    def code(method) -> str:
        """The method's code without comments or any whitespace (formatting aside)."""
        lines = inspect.getsource(method).splitlines()
        return "".join("".join(line.split("#")[0].split()) for line in lines)

    ours = code(HeaderTimeoutProtocol.on_body).replace("BODY_BUFFER_BYTES", "HIGH_WATER_LIMIT")
    assert ours == code(HttpToolsProtocol.on_body)


def test_timeouts_and_limits_must_be_positive(tmp_path):
    from receiver.cli import main

    for flag in ("--header-timeout", "--body-timeout", "--keep-alive-timeout", "--max-connections"):
        with pytest.raises(SystemExit, match="must be positive"):
            main(["--no-auth", "--data-dir", str(tmp_path), flag, "0"])
