"""Capture the ``generic_api`` bodies a real LiteLLM proxy sends, scrubbed, as test fixtures.

    python -m tests.litellm_capture [VERSION ...]    (default: every tested version)

writes ``tests/fixtures/litellm/<version>/`` from a proxy of that version (installed by
``tests.litellm_install``). The proxy has three ``generic_api`` callbacks, ``json_array``,
``ndjson`` and ``single``, all pointing at a sink on 127.0.0.1 that keeps each POST as sent,
and a batch size of three. Requests go out in bursts of three, each burst waiting until its
POSTs have arrived (LiteLLM 1.106.2 drops events queued while a POST is in flight):

1. three successes of mock models, with and without attribution headers;
2. a request, the same request again (a hit of LiteLLM's in-memory response cache), and a
   request the fake upstream answers with 429 (a provider error);
3. requests the fake upstream answers with prompt-cache usage: OpenAI's
   ``prompt_tokens_details.cached_tokens``, Anthropic's ``cache_read_input_tokens`` with
   ``cache_creation_input_tokens``, and a cache write only.

Secrets are replaced, shapes kept: the master key (and its SHA-256, should LiteLLM log it)
becomes ``sk-REPLACE-ME`` (and that key's SHA-256), the callback's bearer token
``Bearer REPLACE-ME``, the proxy's virtualenv path ``/opt/venv``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fake_llm_provider import FakeLLMProvider
from tests.fake_server import FakeHandler, FakeServer
from tests.litellm_install import TESTED_VERSIONS, ensure_litellm_venv
from tests.litellm_proxy import (
    MockModel,
    RunningProxy,
    UpstreamModel,
    env_reference,
    litellm_proxy,
    proxy_config,
)
from tests.samples import LITELLM_FIXTURES

LOG_FORMATS = ("json_array", "ndjson", "single")
BATCH_SIZE = 3
POST_TIMEOUT_S = 60.0
MASTER_KEY_ENV = "SPEND_CAPTURE_MASTER_KEY"
CALLBACK_AUTH_ENV = "SPEND_CAPTURE_CALLBACK_AUTHORIZATION"
MASTER_KEY_PLACEHOLDER = "sk-REPLACE-ME"
CALLBACK_AUTH_PLACEHOLDER = "Bearer REPLACE-ME"
VENV_PLACEHOLDER = "/opt/venv"


@dataclass(frozen=True)
class CaptureRequest:
    model: str
    prompt: str
    headers: dict[str, str] = field(default_factory=dict)
    expected_status: int = 200


ATTRIBUTION = {"X-Department": "Finance", "X-Team": "Billing", "X-Agent": "invoice-bot"}
REPEATED = "What is the capital of France? (asked twice: the second answer is cached)"
BURSTS = (
    (
        CaptureRequest("mock-small", "Say hello.", ATTRIBUTION),
        CaptureRequest(
            "mock-medium",
            "Summarise the invoice.",
            {"X-Department": "Research", "X-Team": "Data-Science", "X-Agent": "notebook-helper"}
            | {"X-LiteLLM-Tags": "projA,env:test"},
        ),
        CaptureRequest("mock-small", "A request without attribution headers."),
    ),
    (
        CaptureRequest("mock-small", REPEATED, ATTRIBUTION),
        CaptureRequest("mock-small", REPEATED, ATTRIBUTION),
        CaptureRequest("gpt-rate-limited", "This one is refused.", ATTRIBUTION, 429),
    ),
    (
        CaptureRequest("gpt-prompt-cached", "Long system prompt, cached.", ATTRIBUTION),
        CaptureRequest("claude-prompt-cached", "Long system prompt, cached.", ATTRIBUTION),
        CaptureRequest("claude-prompt-cache-write", "Long system prompt, written.", ATTRIBUTION),
    ),
)


def capture_models(provider: FakeLLMProvider) -> list[MockModel | UpstreamModel]:
    return [
        MockModel("mock-small", "Hello from the small mock model.", 2e-6, 8e-6),
        MockModel("mock-medium", "Hello from the medium mock model.", 3e-6, 1.5e-5),
        UpstreamModel(
            "gpt-rate-limited", "openai", f"{provider.api_base('rate-limited')}/v1", 2.5e-6, 1e-5
        ),
        UpstreamModel(
            "gpt-prompt-cached",
            "openai",
            f"{provider.api_base('openai-cached')}/v1",
            2.5e-6,
            1e-5,
            cache_read_input_token_cost=1.25e-6,
        ),
        UpstreamModel(
            "claude-prompt-cached",
            "anthropic",
            provider.api_base("anthropic-cache-read"),
            3e-6,
            1.5e-5,
            cache_read_input_token_cost=3e-7,
            cache_creation_input_token_cost=3.75e-6,
        ),
        UpstreamModel(
            "claude-prompt-cache-write",
            "anthropic",
            provider.api_base("anthropic-cache-write"),
            3e-6,
            1.5e-5,
            cache_read_input_token_cost=3e-7,
            cache_creation_input_token_cost=3.75e-6,
        ),
    ]


@dataclass(frozen=True)
class FixtureSource:
    """The POST a fixture file holds: ``log_format``'s POST of burst ``burst`` or, of a
    burst's ``single`` POSTs, the one whose event ``is_wanted``."""

    log_format: str
    burst: int
    is_wanted: Callable[[dict[str, Any]], bool] | None = None


FIXTURE_FILES = {
    "success_batch.json": FixtureSource("json_array", 0),
    "success_batch.ndjson": FixtureSource("ndjson", 0),
    "cache_hit_event.json": FixtureSource("single", 1, lambda e: e.get("cache_hit") is True),
    "failure_event.json": FixtureSource("single", 1, lambda e: e.get("status") == "failure"),
    "openai_cached_tokens_event.json": FixtureSource(
        "single", 2, lambda e: e.get("model_group") == "gpt-prompt-cached"
    ),
    "anthropic_cache_read_event.json": FixtureSource(
        "single", 2, lambda e: e.get("model_group") == "claude-prompt-cached"
    ),
    "anthropic_cache_write_event.json": FixtureSource(
        "single", 2, lambda e: e.get("model_group") == "claude-prompt-cache-write"
    ),
}
HEADERS_FILE = "request_headers.json"


@dataclass(frozen=True)
class ReceivedPost:
    path: str
    headers: dict[str, str]
    body: bytes


class CallbackSink(FakeServer):
    """Answers every POST with 200 and keeps it, by path, as sent."""

    def __init__(self) -> None:
        super().__init__(_SinkHandler)
        self.posts: dict[str, list[ReceivedPost]] = {}
        self._arrived = threading.Condition(self._lock)

    def _keep(self, post: ReceivedPost) -> None:
        with self._arrived:
            self.posts.setdefault(post.path, []).append(post)
            self._arrived.notify_all()

    def wait_for(self, counts: dict[str, int], timeout: float) -> bool:
        """Wait until each path has received at least its count of POSTs."""
        with self._arrived:
            return self._arrived.wait_for(
                lambda: all(len(self.posts.get(p, ())) >= n for p, n in counts.items()), timeout
            )


class _SinkHandler(FakeHandler[CallbackSink]):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.fake._keep(ReceivedPost(self.path, headers, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def sink_callbacks(sink_url: str) -> dict[str, dict[str, Any]]:
    return {
        f"capture_{log_format}": {
            "callback_type": "generic_api",
            "endpoint": f"{sink_url}/{log_format}",
            "log_format": log_format,
            "headers": {"Authorization": env_reference(CALLBACK_AUTH_ENV)},
        }
        for log_format in LOG_FORMATS
    }


def _send_bursts(proxy: RunningProxy, sink: CallbackSink, master_key: str) -> None:
    with httpx.Client(base_url=proxy.url, timeout=60) as client:
        for index, burst in enumerate(BURSTS):
            assert len(burst) == BATCH_SIZE, "every burst must fill exactly one batch"
            # One at a time: the repeated request must find the first one's answer cached.
            for request in burst:
                response = client.post(
                    "/v1/chat/completions",
                    headers={"Authorization": f"Bearer {master_key}"} | request.headers,
                    json={
                        "model": request.model,
                        "messages": [{"role": "user", "content": request.prompt}],
                    },
                )
                if response.status_code != request.expected_status:
                    raise RuntimeError(
                        f"{request.model} answered {response.status_code}, expected "
                        f"{request.expected_status}: {response.text}\n{proxy.log_tail()}"
                    )
            done = index + 1
            expected = {"/json_array": done, "/ndjson": done, "/single": done * BATCH_SIZE}
            if not sink.wait_for(expected, POST_TIMEOUT_S):
                received = {path: len(posts) for path, posts in sink.posts.items()}
                raise TimeoutError(
                    f"burst {index}: expected POSTs {expected}, received {received}\n"
                    f"{proxy.log_tail()}"
                )


class Scrubber:
    """Replaces the run's secrets and paths in a body's text, keeping each value's shape."""

    def __init__(self, master_key: str, callback_auth: str, venv: Path) -> None:
        def sha256(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()

        self.secrets = (master_key, callback_auth.removeprefix("Bearer "))
        self.replacements = (
            (sha256(master_key), sha256(MASTER_KEY_PLACEHOLDER)),
            (callback_auth, CALLBACK_AUTH_PLACEHOLDER),
            (master_key, MASTER_KEY_PLACEHOLDER),
            (str(venv.resolve()), VENV_PLACEHOLDER),
            (str(venv), VENV_PLACEHOLDER),
        )

    def __call__(self, text: str) -> str:
        for secret, placeholder in self.replacements:
            text = text.replace(secret, placeholder)
        if any(secret in text for secret in self.secrets):
            raise ValueError("a secret is left after scrubbing")
        return text


def _pretty(text: str) -> str:
    # As the 1.106.2 fixtures: one-space indentation, non-ASCII kept, a final newline.
    return json.dumps(json.loads(text), indent=1, ensure_ascii=False) + "\n"


def fixture_texts(sink: CallbackSink, scrub: Scrubber) -> dict[str, str]:
    """The fixture files' contents from the POSTs ``sink`` received during the bursts."""
    texts: dict[str, str] = {}
    for name, source in FIXTURE_FILES.items():
        per_burst = BATCH_SIZE if source.log_format == "single" else 1
        posts = sink.posts[f"/{source.log_format}"]
        of_burst = posts[source.burst * per_burst : (source.burst + 1) * per_burst]
        chosen = of_burst
        if source.is_wanted is not None:
            chosen = [post for post in of_burst if source.is_wanted(json.loads(post.body))]
        if len(chosen) != 1:
            raise AssertionError(f"{name}: {len(chosen)} POSTs of burst {source.burst} match")
        text = scrub(chosen[0].body.decode())
        texts[name] = text if name.endswith(".ndjson") else _pretty(text)
    headers = dict(sink.posts["/json_array"][0].headers)
    texts[HEADERS_FILE] = _pretty(scrub(json.dumps(headers)))
    return texts


def capture(version: str, workdir: Path) -> dict[str, str]:
    """Run a proxy of ``version``, send the bursts; the fixture files' scrubbed contents."""
    venv = ensure_litellm_venv(version)
    master_key = f"sk-capture-{secrets.token_hex(12)}"
    callback_auth = f"Bearer capture-token-{secrets.token_hex(12)}"
    with FakeLLMProvider() as provider, CallbackSink() as sink:
        config = proxy_config(
            capture_models(provider),
            sink_callbacks(sink.url),
            MASTER_KEY_ENV,
            response_cache=True,
        )
        env = {
            MASTER_KEY_ENV: master_key,
            CALLBACK_AUTH_ENV: callback_auth,
            # Send exactly when a burst's last event is queued, never on a timer.
            "DEFAULT_BATCH_SIZE": str(BATCH_SIZE),
            "DEFAULT_FLUSH_INTERVAL_SECONDS": "3600",
        }
        with litellm_proxy(venv, config, workdir, env) as proxy:
            _send_bursts(proxy, sink, master_key)
        return fixture_texts(sink, Scrubber(master_key, callback_auth, venv))


def write_fixtures(version: str, texts: dict[str, str]) -> Path:
    target = LITELLM_FIXTURES / version
    target.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (target / name).write_text(text)
    return target


def main(argv: list[str]) -> None:
    for version in argv or TESTED_VERSIONS:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"litellm-capture-{version}-") as workdir:
            target = write_fixtures(version, capture(version, Path(workdir)))
        print(f"litellm {version}: {target} ({time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    main(sys.argv[1:])
