"""One LiteLLM webhook payload, and a batch of them as the proxy POSTs it.

``build_payload`` makes what a LiteLLM proxy's ``generic_api`` callback really sends for one
request: a StandardLoggingPayload object, shaped after the captured bodies of LiteLLM 1.106.2,
a success or one of the provider ``FAILURES``. Each payload carries content and secrets
(``SECRET_MARKERS``) that must never reach disk, so tests can grep for them.
``encode_batch`` is the body of one POST.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from demo.population import Caller, Model

SECRET_MARKERS = ("PROMPT-SECRET-", "COMPLETION-SECRET-", "sk-live-SECRET-", "TRACKING-SECRET-")
# Seconds. Short enough that an event started by demo.traffic's LATEST_START_OFFSET still
# ends, and its batch arrives, inside its own hour.
MAX_RESPONSE_TIME = 60.0
USER_AGENTS = ("OpenAI/Python 1.55.3", "python-httpx/0.28.1", "curl/8.5.0")
# (error_code, error_class, normalized_error, message)
FAILURES = (
    ("429", "RateLimitError", None, "Rate limit reached for requests"),
    ("500", "InternalServerError", "500_PROVIDER_CONNECTION_ERROR", "Connection error."),
    ("408", "Timeout", None, "Request timed out."),
    ("400", "ContextWindowExceededError", None, "This model's maximum context length is exceeded"),
)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _digest(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def _fake_key(key_alias: str | None, user_id: str) -> str:
    """A stable fake virtual key per caller; it and its hash must never reach disk."""
    return "sk-live-SECRET-" + _digest("key", key_alias or "", user_id)[:32]


def _team_id(team_alias: str | None) -> str | None:
    return str(uuid.UUID(_digest("team", team_alias)[:32])) if team_alias else None


# Prompt caching: how often a provider serves part of the prompt from its cache, and the
# share of the input price it charges for those tokens (OpenAI-style halves it; Anthropic's
# reads cost a tenth and its cache writes a quarter more). LiteLLM's own response cache
# answers some requests outright, at no cost.
PROMPT_CACHE_RATE = 0.35
CACHE_READ_PRICE = {"anthropic": 0.1, "bedrock": 0.1}
DEFAULT_CACHE_READ_PRICE = 0.5
CACHE_WRITE_PRICE = 1.25
RESPONSE_CACHE_RATE = 0.05


def _prompt_cache(
    rng: random.Random, model: Model, prompt_tokens: int
) -> tuple[dict[str, Any], float]:
    """The usage fields a provider reports for a cached prompt, and the input price factor.

    OpenAI, Azure and Vertex report ``prompt_tokens_details.cached_tokens``; Anthropic and
    Bedrock ``cache_read_input_tokens`` and ``cache_creation_input_tokens``.
    """
    if prompt_tokens < 1024 or rng.random() >= PROMPT_CACHE_RATE:
        return {"prompt_tokens_details": None}, 1.0
    read = int(prompt_tokens * rng.uniform(0.3, 0.9))
    read_price = CACHE_READ_PRICE.get(model.provider, DEFAULT_CACHE_READ_PRICE)
    if model.provider in CACHE_READ_PRICE:
        written = rng.choice([0, (prompt_tokens - read) // 2])
        fields = {
            "prompt_tokens_details": {"cached_tokens": read},
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        }
        uncached = prompt_tokens - read - written
        factor = (uncached + read * read_price + written * CACHE_WRITE_PRICE) / prompt_tokens
        return fields, factor
    fields = {"prompt_tokens_details": {"cached_tokens": read}}
    return fields, (prompt_tokens - read + read * read_price) / prompt_tokens


def _token_counts(rng: random.Random) -> tuple[int, int]:
    prompt = min(max(int(rng.lognormvariate(6.5, 0.9)), 20), 60_000)
    completion = min(max(int(rng.lognormvariate(5.3, 0.8)), 5), 8_000)
    return prompt, completion


def _request_headers(caller: Caller, user_agent: str, tracking: str, key: str) -> dict:
    """The raw request headers LiteLLM keeps in requester_metadata (secrets included)."""
    return {
        "host": "llm-proxy.internal:4000",
        "user-agent": user_agent,
        "accept": "application/json",
        "content-type": "application/json",
        "authorization": f"Bearer {key}",
        **caller.headers,
        "x-tracking-token": tracking,
    }


def build_payload(
    rng: random.Random, start: float, caller: Caller, model: Model, failure: tuple | None
) -> dict[str, Any]:
    """One StandardLoggingPayload, shaped like LiteLLM 1.106.2's (trimmed model map)."""
    call_id = _uuid(rng)
    request_id = call_id if failure else f"chatcmpl-{_uuid(rng)}"
    trace_id = _uuid(rng)
    user_agent = rng.choice(USER_AGENTS)
    tracking = "TRACKING-SECRET-" + _uuid(rng)
    key = _fake_key(caller.key_alias, caller.user_id)
    prompt_tokens, completion_tokens = (0, 0) if failure else _token_counts(rng)
    seconds = 0.25 + completion_tokens / rng.uniform(40.0, 150.0) + rng.uniform(0.0, 1.5)
    end = round(start + min(seconds, MAX_RESPONSE_TIME), 6)
    cache_fields, input_factor = _prompt_cache(rng, model, prompt_tokens)
    response_cache_hit = not failure and rng.random() < RESPONSE_CACHE_RATE
    input_cost = prompt_tokens * model.input_cost_per_token * input_factor
    output_cost = completion_tokens * model.output_cost_per_token
    cost = 0.0 if response_cache_hit else input_cost + output_cost
    team_id = _team_id(caller.team_alias)
    custom_headers = {**caller.headers, "x-tracking-token": tracking}
    usage = {
        "completion_tokens": completion_tokens,
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": None,
        **cache_fields,
    }
    spend_logs_metadata = {"cost_center": f"CC-{_digest('cc', caller.user_id)[:4]}"}
    requester_metadata: dict[str, Any] = {
        "headers": _request_headers(caller, user_agent, tracking, key),
        "used_client_oauth_token": False,
    }
    if caller.body_tags:
        requester_metadata = {"tags": list(caller.body_tags), **requester_metadata}
    ua_name = user_agent.split("/")[0]
    deployment_id = _digest("deployment", model.model)
    return {
        "id": request_id,
        "litellm_call_id": call_id,
        "trace_id": trace_id,
        "session_id": "",
        "call_type": "acompletion",
        "cache_hit": True if response_cache_hit else (False if failure else None),
        "stream": None,
        "status": "failure" if failure else "success",
        "status_fields": {
            "llm_api_status": "failure" if failure else "success",
            "guardrail_status": "not_run",
        },
        "custom_llm_provider": model.provider,
        "saved_cache_cost": 0.0,
        "startTime": start,
        "endTime": end,
        "completionStartTime": end,
        "response_time": end - start,
        "model": model.model,
        "metadata": {
            "user_api_key_hash": _digest(key),
            "user_api_key_alias": caller.key_alias,
            "user_api_key_spend": 0.0,
            "user_api_key_max_budget": None,
            "user_api_key_team_id": team_id,
            "user_api_key_org_id": None,
            "user_api_key_user_id": caller.user_id,
            "user_api_key_team_alias": caller.team_alias,
            "user_api_key_user_email": None,
            "user_api_key_end_user_id": None,
            "user_api_key_request_route": "/v1/chat/completions",
            "spend_logs_metadata": spend_logs_metadata,
            "requester_ip_address": "10.0.12.7",
            "user_agent": user_agent,
            "requester_metadata": requester_metadata,
            "applied_guardrails": [],
            "usage_object": {} if failure else usage,
            "requester_custom_headers": custom_headers,
            "user_api_key_auth_metadata": {},
            "team_alias": caller.team_alias,
            "team_id": team_id,
            "used_client_oauth_token": False,
        },
        "cache_key": None,
        "response_cost": cost,
        "cost_breakdown": None
        if failure
        else {
            "input_cost": input_cost,
            "output_cost": output_cost,
            "total_cost": cost,
            "tool_usage_cost": 0.0,
            "original_cost": cost,
            "discount_percent": 0.0,
            "discount_amount": 0.0,
            "margin_percent": 0.0,
            "margin_fixed_amount": 0.0,
            "margin_total_amount": 0.0,
        },
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "request_tags": [
            *caller.tags,
            f"User-Agent: {ua_name}",
            f"User-Agent: {user_agent}",
        ],
        "request_model_access_groups": [],
        "end_user": None,
        "api_base": model.api_base,
        "model_group": model.group,
        "model_id": deployment_id,
        "requester_ip_address": "10.0.12.7",
        "user_agent": user_agent,
        "messages": [
            {"role": "system", "content": f"You are {caller.user_id}."},
            {"role": "user", "content": f"PROMPT-SECRET-{call_id}: {caller.task}."},
        ],
        "response": {} if failure else _completion(request_id, call_id, start, model, usage),
        "model_parameters": {"stream": False, "temperature": 0.2},
        "hidden_params": {
            "model_id": None if failure else deployment_id,
            "cache_key": None,
            "api_base": None if failure else model.api_base,
            "response_cost": cost,
            "additional_headers": None
            if failure
            else {
                "x-litellm-model-group": model.group,
                "x-litellm-attempted-retries": 0,
                "x-litellm-attempted-fallbacks": 0,
            },
            "litellm_overhead_time_ms": None,
            "litellm_model_name": None if failure else model.model,
            "usage_object": None,
        },
        "model_map_information": {
            "model_map_key": model.model,
            "model_map_value": {
                "key": model.model,
                "input_cost_per_token": model.input_cost_per_token,
                "output_cost_per_token": model.output_cost_per_token,
                "litellm_provider": model.provider,
                "mode": "chat",
            },
        },
        "error_str": _error_str(failure, model),
        "error_information": _error_information(failure, model),
        "response_cost_failure_debug_info": None,
        "zero_cost_diagnostic": None,
        "guardrail_information": None,
        "standard_built_in_tools_params": {"web_search_options": None, "file_search": None},
    }


def _completion(request_id: str, call_id: str, start: float, model: Model, usage: dict) -> dict:
    return {
        "id": request_id,
        "created": int(start),
        "model": model.group,
        "object": "chat.completion",
        "system_fingerprint": None,
        "choices": [
            {
                "finish_reason": "stop",
                "index": 0,
                "message": {
                    "content": f"COMPLETION-SECRET-{call_id}: here is the draft you asked for.",
                    "role": "assistant",
                    "tool_calls": None,
                    "function_call": None,
                },
            }
        ],
        "usage": dict(usage),
    }


def _error_str(failure: tuple | None, model: Model) -> str | None:
    if not failure:
        return None
    _, error_class, _, message = failure
    return f"litellm.{error_class}: {error_class}: {model.exception} - {message}"


def _error_information(failure: tuple | None, model: Model) -> dict[str, Any]:
    code, error_class, normalized, _ = failure or ("", "", None, "")
    return {
        "error_code": code,
        "error_class": error_class,
        "llm_provider": model.provider if failure else "",
        "traceback": '  File "litellm/main.py", line 740, in acompletion\n' if failure else "",
        "error_message": _error_str(failure, model) or "",
        "error_provider_request_id": None,
        "error_rate_limit_category": None,
        "error_rate_limit_type": None,
        "error_budget_entity_type": None,
        "error_budget_entity_id": None,
        "error_budget_limit": None,
        "error_budget_spend": None,
        "normalized_error": normalized,
    }


def encode_batch(payloads: Sequence[Mapping[str, Any]], log_format: str = "json_array") -> bytes:
    """A batch as LiteLLM's generic_api logger POSTs it: a JSON array, or NDJSON."""
    if log_format == "json_array":
        return json.dumps(list(payloads)).encode()
    if log_format == "ndjson":
        return "".join(json.dumps(p) + "\n" for p in payloads).encode()
    raise ValueError(f"log_format must be 'json_array' or 'ndjson', got {log_format!r}")
