"""A fake LLM provider on 127.0.0.1 for a real LiteLLM proxy to call: OpenAI's chat
completions and Anthropic's messages, answering with prompt-cache usage or a rate limit.

The first path segment picks the answer, so each proxy deployment points its ``api_base``
at one of them (``<url>/openai-cached/v1``, ``<url>/anthropic-cache-read``, …); the rest of
the path is what the provider SDK appends (``/chat/completions``, ``/v1/messages``).
Every request's path is recorded; bodies are not kept.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.fake_server import FakeHandler, FakeServer

COMPLETION = "A reply from the fake provider."

# OpenAI reports cache reads inside prompt_tokens: 1,920 of the 2,006 prompt tokens were read.
OPENAI_CACHED_USAGE = {
    "prompt_tokens": 2006,
    "completion_tokens": 12,
    "total_tokens": 2018,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# Anthropic reports them beside input_tokens, which counts only the uncached rest.
ANTHROPIC_CACHE_READ_USAGE = {
    "input_tokens": 14,
    "output_tokens": 9,
    "cache_creation_input_tokens": 512,
    "cache_read_input_tokens": 2048,
}
ANTHROPIC_CACHE_WRITE_USAGE = {
    "input_tokens": 14,
    "output_tokens": 9,
    "cache_creation_input_tokens": 2048,
    "cache_read_input_tokens": 0,
}
RATE_LIMIT_ERROR = {
    "error": {
        "message": "Rate limit reached for requests per minute (fake provider).",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}


def openai_completion(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": COMPLETION, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "system_fingerprint": "fp_fake",
    }


def anthropic_message(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": COMPLETION}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


class FakeLLMProvider(FakeServer):
    """The routes, by first path segment: ``openai-cached``, ``anthropic-cache-read``,
    ``anthropic-cache-write`` answer 200 with that usage; ``rate-limited`` answers 429."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.paths: list[str] = []

    def api_base(self, route: str) -> str:
        """The ``api_base`` of a deployment served by ``route``."""
        return f"{self.url}/{route}"

    def _record(self, path: str) -> None:
        with self._lock:
            self.paths.append(path)


class _Handler(FakeHandler[FakeLLMProvider]):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        self.server.fake._record(self.path)
        route = self.path.lstrip("/").partition("/")[0]
        model = str(request.get("model", "unknown"))
        if route == "openai-cached":
            self._send_json(200, openai_completion(model, OPENAI_CACHED_USAGE))
        elif route == "anthropic-cache-read":
            self._send_json(200, anthropic_message(model, ANTHROPIC_CACHE_READ_USAGE))
        elif route == "anthropic-cache-write":
            self._send_json(200, anthropic_message(model, ANTHROPIC_CACHE_WRITE_USAGE))
        elif route == "rate-limited":
            # The provider's request id, which LiteLLM may keep with the error.
            headers = {"x-request-id": f"req_{uuid.uuid4().hex}", "retry-after": "20"}
            self._send_json(429, RATE_LIMIT_ERROR, headers)
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
