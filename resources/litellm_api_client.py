"""One page of LiteLLM's ``GET /spend/logs/v2`` at a time: the request, its retries on 429,
5xx, timeouts and connection errors, and error messages with the master key cut out.

Errors are LiteLLM ``ProxyException`` bodies, ``{"error": {"message", "type", "param",
"code"}}``, or FastAPI's ``{"detail": ...}`` (422 for ``page_size`` above 1000). A 401 message
echoes the key's last four characters and its hash; both are removed here. How pages make a
complete window is ``resources.litellm_api``'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from resources.litellm_api_rows import PAGE_DECODER, Page

log = logging.getLogger(__name__)

SPEND_LOGS_PATH = "/spend/logs/v2"
# A page of 1000 rows is a count query plus an OFFSET query on a live table: seconds at
# worst, so a minute without an answer means the proxy or its database is stuck.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
ERROR_TEXT_CHARS = 300


class LiteLLMApiError(RuntimeError):
    """The proxy could not be read; the message names the URL and status, never the key."""


@dataclass(frozen=True)
class RetryPolicy:
    """How one request is retried on 429, 5xx, timeouts and connection errors."""

    max_attempts: int = 6
    backoff_base_s: float = 0.5  # doubles per attempt: 0.5, 1, 2, 4, 8 s (with jitter)
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 60.0  # a 429's Retry-After is honoured up to this
    max_elapsed_s: float = 180.0  # no retry starts later than this after the first attempt

    def backoff_s(self, retry_number: int) -> float:
        """Exponential backoff with jitter, so parallel readers do not retry in step."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry_number - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class _Retryable:
    problem: str  # for the log and the final error; never holds the key
    wait_s: float


class SpendLogsClient:
    """Gets pages from one proxy with the master key; counts its retries."""

    def __init__(
        self,
        *,
        client: httpx.Client,
        endpoint: str,
        master_key: str,
        timeout: httpx.Timeout | float,
        retry: RetryPolicy,
        deadline: float,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.display_url = without_userinfo(endpoint)
        self.headers = {"Authorization": f"Bearer {master_key}", "Accept": "application/json"}
        self.timeout = timeout
        self.retry = retry
        self.deadline = deadline
        self.secrets = _secret_forms(master_key)
        self.retries = 0

    def get_page(self, params: dict[str, str]) -> Page:
        """One page; transient failures are retried within the policy and the deadline."""
        first_attempt = time.monotonic()
        for attempt in range(1, self.retry.max_attempts + 1):
            if time.monotonic() > self.deadline:
                raise LiteLLMApiError(
                    f"reading LiteLLM {self.display_url} took longer than its time limit; "
                    f"stopped at {params['start_date']} page {params['page']}"
                )
            outcome = self._attempt(params, attempt)
            if isinstance(outcome, Page):
                return outcome
            now = time.monotonic()
            elapsed = now - first_attempt
            if (
                attempt == self.retry.max_attempts
                or elapsed + outcome.wait_s > self.retry.max_elapsed_s
                or now + outcome.wait_s > self.deadline
            ):
                raise LiteLLMApiError(
                    f"LiteLLM {self.display_url} still failing after {attempt} attempts in "
                    f"{elapsed:.1f}s ({params['start_date']} page {params['page']}): "
                    f"{outcome.problem}"
                )
            self.retries += 1
            log.warning(
                "LiteLLM %s %s page %s: %s; retry %d/%d in %.2fs",
                SPEND_LOGS_PATH,
                params["start_date"],
                params["page"],
                outcome.problem,
                attempt,
                self.retry.max_attempts - 1,
                outcome.wait_s,
            )
            time.sleep(outcome.wait_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _attempt(self, params: dict[str, str], attempt: int) -> Page | _Retryable:
        """One request: the page, or what went wrong that a later attempt may not meet."""
        try:
            response = self.client.get(
                self.endpoint, params=params, headers=self.headers, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            problem = f"{type(exc).__name__} (no answer within the timeout)"
            return _Retryable(problem, self.retry.backoff_s(attempt))
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            return _Retryable(problem, self.retry.backoff_s(attempt))
        status = response.status_code
        if status == 200:
            return self._decode(response)
        if status in (401, 403):
            raise self._refusal(status, self._error_text(response))
        if status == 429 or status >= 500:
            wait_s = _retry_after_s(response, self.retry.retry_after_max_s)
            if wait_s is None:
                wait_s = self.retry.backoff_s(attempt)
            return _Retryable(f"HTTP {status}: {self._error_text(response)}", wait_s)
        raise LiteLLMApiError(
            f"LiteLLM {self.display_url} answered HTTP {status} "
            f"({params['start_date']}..{params['end_date']} page {params['page']}): "
            f"{self._error_text(response)}"
        )

    def _refusal(self, status: int, message: str) -> LiteLLMApiError:
        if _NO_DATABASE in message:
            # ui_view_spend_logs answers 401 to a valid key when the proxy has no database.
            return LiteLLMApiError(
                f"LiteLLM at {self.display_url} has no database, so no spend logs to read "
                f"({status}: {message}); set DATABASE_URL on the proxy"
            )
        return LiteLLMApiError(
            f"LiteLLM rejected LITELLM_MASTER_KEY ({status}) at {self.display_url}: {message}"
        )

    def _decode(self, response: httpx.Response) -> Page:
        try:
            return PAGE_DECODER.decode(response.content)
        except msgspec.DecodeError as exc:
            # msgspec names the path and expected type, never the value: safe to show.
            raise LiteLLMApiError(
                f"LiteLLM {self.display_url} answered 200 with an unexpected body "
                f"({response.headers.get('content-type', 'no content type')}): {exc}"
            ) from None

    def _error_text(self, response: httpx.Response) -> str:
        return self._scrub(_error_message(response))[:ERROR_TEXT_CHARS]

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        text = _KEY_HINT.sub(r"\1[redacted]", text)
        return _HEX_DIGEST.sub("[redacted]", text)


def spend_logs_endpoint(proxy_url: str) -> str:
    parts = urlsplit(proxy_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LiteLLMApiError(
            f"LITELLM_PROXY_URL must be an http:// or https:// URL, not {without_userinfo(proxy_url)!r}"
        )
    path = parts.path.rstrip("/") + SPEND_LOGS_PATH  # a proxy mounted under a path prefix
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _secret_forms(master_key: str) -> tuple[str, ...]:
    """The key and its SHA-256 (LiteLLM's stored token), longest first, to cut from texts."""
    if not master_key:
        return ()
    return (hashlib.sha256(master_key.encode()).hexdigest(), master_key)


_NO_DATABASE = "Prisma Client is not initialized"
# LiteLLM's 401 says "Received API Key = sk-...abcd, Key Hash (Token) =<sha256>".
_KEY_HINT = re.compile(r"(sk-\.\.\.)\S{4}")  # abbreviate_api_key: the last four
_HEX_DIGEST = re.compile(r"\b[0-9a-fA-F]{64}\b")


def _error_message(response: httpx.Response) -> str:
    """The human part of a LiteLLM error body, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text[: ERROR_TEXT_CHARS * 2].split()) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message") is not None:
            return str(error["message"])
        if "detail" in body:
            detail = body["detail"]
            return detail if isinstance(detail, str) else json.dumps(detail)[: ERROR_TEXT_CHARS * 2]
    return json.dumps(body)[: ERROR_TEXT_CHARS * 2]


def _retry_after_s(response: httpx.Response, cap_s: float) -> float | None:
    """``Retry-After`` in seconds, capped; ``None`` when absent or an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), cap_s)
