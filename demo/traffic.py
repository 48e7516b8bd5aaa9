"""Deterministic sample LiteLLM traffic: webhook batches plus the answer key.

The demo and the end-to-end tests need spend data that looks like what a LiteLLM proxy's
``generic_api`` callback really POSTs (StandardLoggingPayload objects, shaped after the
captured bodies of LiteLLM 1.106.2) *and* need to know the right answer for it. So the
generator builds both from one seeded ``random.Random``:

* ``Traffic.batches``: ``(received_at, payloads)`` in delivery order, including the awkward
  cases the pipeline must survive: failures, duplicate deliveries (webhook retries, double
  logs) and late events (delivered in a batch of a later hour);
* ``Traffic.requests``: one ``ExpectedRequest`` per unique request, with its usage hour,
  exact cost, tokens and the department/team/agent the pipeline must attribute it to.

Attribution arrives through every channel the design allows (headers, both tag forms, the
mapping file, a bare LiteLLM team alias, nothing), and each payload carries content and
secrets (``SECRET_MARKERS``) that must never reach disk, so tests can grep for them.

Nothing here reads the clock: the same arguments give the same traffic, byte for byte.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from resources.landing import LandingZone, WriteResult

SECRET_MARKERS = ("PROMPT-SECRET-", "COMPLETION-SECRET-", "sk-live-SECRET-", "TRACKING-SECRET-")
UNATTRIBUTED = "unattributed"
HOUR = timedelta(hours=1)

# Shares of the traffic. Failures, duplicates and late events are independent of the channel.
FAILURE_RATE = 0.03
DUPLICATE_RATE = 0.02
LATE_RATE = 0.01
MAX_LATE_HOURS = 3  # a late event arrives 1..3 hours after its own hour (within the range)
DUPLICATE_SPREAD = 8  # a duplicate arrives in the same batch or one of the next few
BATCH_SIZES = (5, 50)  # LiteLLM flushes when its queue is full or on a timer
FLUSH_DELAY = (0.05, 5.0)  # seconds between the last event of a batch and its POST
# Events start early enough that they end, and their batch arrives, inside their own hour.
LATEST_START_OFFSET = 3600 - 120
MAX_RESPONSE_TIME = 60.0


@dataclass(frozen=True)
class Model:
    """One deployment behind the proxy, with LiteLLM-style per-token list prices (USD)."""

    model: str  # LiteLLM's provider-qualified model, the payload's ``model``
    group: str  # the proxy's ``model_name``, the payload's ``model_group``
    provider: str
    input_cost_per_token: float
    output_cost_per_token: float
    api_base: str
    exception: str  # how LiteLLM names the provider's errors in ``error_str``


MODELS = {
    m.group: m
    for m in (
        Model(
            "openai/gpt-4o",
            "gpt-4o",
            "openai",
            2.5e-06,
            1e-05,
            "https://api.openai.com/v1",
            "OpenAIException",
        ),
        Model(
            "openai/gpt-4o-mini",
            "gpt-4o-mini",
            "openai",
            1.5e-07,
            6e-07,
            "https://api.openai.com/v1",
            "OpenAIException",
        ),
        Model(
            "anthropic/claude-3-5-sonnet-20241022",
            "claude-sonnet",
            "anthropic",
            3e-06,
            1.5e-05,
            "https://api.anthropic.com",
            "AnthropicException",
        ),
        Model(
            "azure/gpt-4o-eu",
            "gpt-4o-eu",
            "azure",
            2.75e-06,
            1.1e-05,
            "https://contoso-eu.openai.azure.com",
            "AzureException",
        ),
        Model(
            "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
            "claude-haiku",
            "bedrock",
            2.5e-07,
            1.25e-06,
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            "BedrockException",
        ),
        Model(
            "vertex_ai/gemini-1.5-pro",
            "gemini-pro",
            "vertex_ai",
            1.25e-06,
            5e-06,
            "https://us-central1-aiplatform.googleapis.com",
            "VertexAIException",
        ),
        Model(
            "vertex_ai/gemini-1.5-flash",
            "gemini-flash",
            "vertex_ai",
            7.5e-08,
            3e-07,
            "https://us-central1-aiplatform.googleapis.com",
            "VertexAIException",
        ),
    )
}


@dataclass(frozen=True)
class Agent:
    """A well-behaved caller: it names itself with headers or tags."""

    department: str
    team: str
    agent: str
    key_alias: str  # its LiteLLM virtual key (not in the mapping file)
    team_alias: str  # its LiteLLM team (not in the mapping file either)
    models: tuple[str, ...]
    weight: int
    task: str


AGENTS = (
    Agent(
        "finance",
        "ap",
        "invoice-bot",
        "ap-invoice-bot-key",
        "finance-ap",
        ("gpt-4o-mini", "claude-haiku"),
        12,
        "Extract the line items of this invoice",
    ),
    Agent(
        "finance",
        "fpa",
        "forecast-assistant",
        "fpa-forecast-key",
        "finance-fpa",
        ("gpt-4o", "gemini-pro"),
        5,
        "Explain the variance in this forecast",
    ),
    Agent(
        "engineering",
        "platform",
        "code-review-bot",
        "platform-review-key",
        "eng-platform",
        ("claude-sonnet", "gpt-4o"),
        14,
        "Review this pull request diff",
    ),
    Agent(
        "engineering",
        "sre",
        "incident-summarizer",
        "sre-incident-key",
        "eng-sre",
        ("gpt-4o-eu", "claude-haiku"),
        6,
        "Summarise this incident timeline",
    ),
    Agent(
        "support",
        "tier1",
        "helpdesk-agent",
        "helpdesk-key",
        "support-tier1",
        ("gpt-4o-mini", "gemini-flash"),
        25,
        "Answer this customer ticket",
    ),
    Agent(
        "support",
        "tier2",
        "escalation-agent",
        "escalation-key",
        "support-tier2",
        ("claude-sonnet", "gpt-4o-eu"),
        6,
        "Draft a reply to this escalated ticket",
    ),
    Agent(
        "marketing",
        "content",
        "copy-writer",
        "copywriter-key",
        "marketing-content",
        ("claude-sonnet", "gpt-4o"),
        8,
        "Write launch copy for this product",
    ),
    Agent(
        "research",
        "ml",
        "paper-summarizer",
        "paper-summary-key",
        "research-ml",
        ("gemini-pro", "claude-sonnet"),
        6,
        "Summarise this paper",
    ),
)

MAPPING_YAML = """\
# Demo attribution mapping: point SPEND_ATTRIBUTION_FILE at a file with this content.
# Consulted per field after request headers and request tags; a field an entry does not
# name falls through to the next rule (LiteLLM team alias, then "unattributed").
keys:   # LiteLLM key alias -> attribution (checked first)
  billing-service-key: {department: finance, team: billing, agent: billing-reconciler}
  etl-nightly-key: {department: engineering, team: data-platform, agent: etl-runner}
  ml-batch-key: {agent: batch-scorer}
teams:  # LiteLLM team alias -> attribution
  data-science: {department: research, team: data-science}
  legal-ops: {department: legal, team: contracts, agent: contract-reviewer}
"""
MAPPING: dict[str, dict[str, dict[str, str]]] = yaml.safe_load(MAPPING_YAML)

# How callers say who they are (weights in percent). Each channel names the rule that must
# decide the department, so a test can check that the answer key really exercises it.
CHANNELS = {
    "header": 70,  # X-Department/X-Team/X-Agent headers
    "tag_x": 6,  # only tags in LiteLLM's extra_spend_tag_headers form "x-department: finance"
    "tag_colon": 6,  # only tags in the "department:finance" form (x-litellm-tags or body)
    "mapping_key": 4,  # only a key alias that the mapping file knows
    "mapping_team": 3,  # only a team alias that the mapping file knows
    "mapping_split": 1,  # key entry gives the agent, team entry the department and team
    "team_alias": 5,  # only a team alias the mapping file does not know
    "none": 5,  # nothing at all
}
CHANNEL_SOURCE = {
    "header": "header",
    "tag_x": "tag",
    "tag_colon": "tag",
    "mapping_key": "mapping",
    "mapping_team": "mapping",
    "mapping_split": "mapping",
    "team_alias": "team_alias",
    "none": UNATTRIBUTED,
}
# Callers without attribution of their own: (key alias, team alias, user id).
ANONYMOUS_CALLERS = {
    "mapping_key": (
        ("billing-service-key", "finance-ops", "svc-billing"),
        ("etl-nightly-key", None, "svc-etl"),
    ),
    "mapping_team": (
        ("ds-notebook-key", "data-science", "user-rkumar"),
        ("legal-assist-key", "legal-ops", "user-mchen"),
    ),
    "mapping_split": (("ml-batch-key", "data-science", "svc-ml-batch"),),
    "team_alias": (
        ("growth-key", "growth-experiments", "user-lnguyen"),
        ("sales-ops-key", "sales-ops", "user-pdiaz"),
        (None, "hr-people", "user-okim"),
    ),
    "none": (
        (None, None, "default_user_id"),
        ("personal-key-jdoe", None, "user-jdoe"),
        ("personal-key-asmith", None, "user-asmith"),
    ),
}
USER_AGENTS = ("OpenAI/Python 1.55.3", "python-httpx/0.28.1", "curl/8.5.0")
# (error_code, error_class, normalized_error, message)
FAILURES = (
    ("429", "RateLimitError", None, "Rate limit reached for requests"),
    ("500", "InternalServerError", "500_PROVIDER_CONNECTION_ERROR", "Connection error."),
    ("408", "Timeout", None, "Request timed out."),
    ("400", "ContextWindowExceededError", None, "This model's maximum context length is exceeded"),
)


class Attribution(NamedTuple):
    department: str
    team: str
    agent: str
    source: str  # the rule that decided the department


def _tag_values(tags: Sequence[str]) -> dict[str, str]:
    """``x-department: finance`` and ``department:finance`` → {"department": "finance"}."""
    found: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition(":")
        key, value = key.strip().lower().removeprefix("x-"), value.strip()
        if sep and value and key in ("department", "team", "agent"):
            found.setdefault(key, value)
    return found


def expected_attribution(
    headers: Mapping[str, str],
    request_tags: Sequence[str],
    key_alias: str | None,
    team_alias: str | None,
    mapping: Mapping[str, Any] = MAPPING,
) -> Attribution:
    """The answer key's reading of the design's attribution rules, field by field.

    Each of department, team and agent takes the first of: the ``x-<field>`` header, a
    ``x-<field>: v`` / ``<field>:v`` tag, the mapping entry of the key alias, then of the
    team alias, the team alias itself (department and team only), ``unattributed``.
    """
    tags = _tag_values(request_tags)
    key_entry = (mapping.get("keys") or {}).get(key_alias or "") or {}
    team_entry = (mapping.get("teams") or {}).get(team_alias or "") or {}
    resolved: dict[str, tuple[str, str]] = {}
    for name in ("department", "team", "agent"):
        candidates = [
            (headers.get(f"x-{name}"), "header"),
            (tags.get(name), "tag"),
            (key_entry.get(name), "mapping"),
            (team_entry.get(name), "mapping"),
            (team_alias if name != "agent" else None, "team_alias"),
            (UNATTRIBUTED, UNATTRIBUTED),
        ]
        resolved[name] = next((v, rule) for v, rule in candidates if v)
    return Attribution(
        resolved["department"][0],
        resolved["team"][0],
        resolved["agent"][0],
        resolved["department"][1],
    )


@dataclass(frozen=True)
class ExpectedRequest:
    """What the pipeline must make of one unique request (however often it was delivered)."""

    request_key: str  # litellm_call_id
    hour: datetime  # UTC hour of startTime
    model: str
    provider: str
    cost: Decimal  # Decimal(repr(response_cost))
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    failed: bool
    department: str
    team: str
    agent: str
    attribution_source: str
    channel: str  # the generator's intent, one of CHANNELS
    deliveries: int = 1
    late: bool = False  # first (only) delivery in a batch of a later hour


@dataclass
class Traffic:
    """Webhook batches in delivery order and the answer key for them."""

    start: datetime
    hour_count: int
    batches: list[tuple[float, list[dict[str, Any]]]]
    requests: list[ExpectedRequest]

    @property
    def hours(self) -> list[datetime]:
        return [self.start + i * HOUR for i in range(self.hour_count)]

    @property
    def total_cost(self) -> Decimal:
        return sum((r.cost for r in self.requests), Decimal(0))

    @property
    def total_tokens(self) -> int:
        return sum(r.total_tokens for r in self.requests)

    @property
    def deliveries(self) -> int:
        return sum(len(payloads) for _, payloads in self.batches)

    @property
    def duplicates(self) -> int:
        return self.deliveries - len(self.requests)

    @property
    def late_events(self) -> int:
        return sum(r.late for r in self.requests)

    @property
    def failures(self) -> int:
        return sum(r.failed for r in self.requests)

    def payloads(self) -> Iterator[dict[str, Any]]:
        """Every delivered payload, duplicates included, in delivery order."""
        for _, payloads in self.batches:
            yield from payloads

    def count_by(self, name: str) -> Counter[str]:
        """Unique requests per value of an ``ExpectedRequest`` field, e.g. ``channel``."""
        return Counter(getattr(r, name) for r in self.requests)

    def cost_by(self, *names: str) -> dict[tuple[Any, ...], Decimal]:
        """Exact cost per ``(hour, *field values)``, e.g. ``cost_by("department")``."""
        totals: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
        for r in self.requests:
            totals[(r.hour, *(getattr(r, n) for n in names))] += r.cost
        return dict(totals)


@dataclass(frozen=True)
class _Caller:
    """Who sends a request and which attribution signals it carries."""

    channel: str
    key_alias: str | None
    team_alias: str | None
    user_id: str
    models: tuple[str, ...]
    task: str
    headers: dict[str, str] = field(default_factory=dict)  # lowercased custom headers
    tags: tuple[str, ...] = ()  # tags LiteLLM adds to request_tags
    body_tags: tuple[str, ...] = ()  # tags sent in the request body's metadata


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _digest(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def _fake_key(key_alias: str | None, user_id: str) -> str:
    """A stable fake virtual key per caller; it and its hash must never reach disk."""
    return "sk-live-SECRET-" + _digest("key", key_alias or "", user_id)[:32]


def _team_id(team_alias: str | None) -> str | None:
    return str(uuid.UUID(_digest("team", team_alias)[:32])) if team_alias else None


def _pick_caller(rng: random.Random, channel: str) -> _Caller:
    if channel not in ("header", "tag_x", "tag_colon"):
        key_alias, team_alias, user_id = rng.choice(ANONYMOUS_CALLERS[channel])
        return _Caller(channel, key_alias, team_alias, user_id, tuple(MODELS), "Help with this")
    agent = rng.choices(AGENTS, weights=[a.weight for a in AGENTS])[0]
    who = {"department": agent.department, "team": agent.team, "agent": agent.agent}
    caller = _Caller(
        channel, agent.key_alias, agent.team_alias, f"svc-{agent.agent}", agent.models, agent.task
    )
    if channel == "header":
        # The proxy config lists x-department and x-team in extra_spend_tag_headers, so
        # LiteLLM also copies those two into request_tags (as in the captured fixture).
        return _replace(
            caller,
            headers={f"x-{k}": v for k, v in who.items()},
            tags=(f"x-department: {agent.department}", f"x-team: {agent.team}"),
        )
    if channel == "tag_x":
        return _replace(caller, tags=tuple(f"x-{k}: {v}" for k, v in who.items()))
    tags = tuple(f"{k}:{v}" for k, v in who.items())
    if rng.random() < 0.5:  # via the x-litellm-tags header, else in the request body
        return _replace(caller, headers={"x-litellm-tags": ",".join(tags)}, tags=tags)
    return _replace(caller, tags=tags, body_tags=tags)


def _replace(caller: _Caller, **changes: Any) -> _Caller:
    return _Caller(**{**caller.__dict__, **changes})


def _token_counts(rng: random.Random) -> tuple[int, int]:
    prompt = min(max(int(rng.lognormvariate(6.5, 0.9)), 20), 60_000)
    completion = min(max(int(rng.lognormvariate(5.3, 0.8)), 5), 8_000)
    return prompt, completion


def _request_headers(caller: _Caller, user_agent: str, tracking: str, key: str) -> dict:
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


def _build_payload(
    rng: random.Random, start: float, caller: _Caller, model: Model, failure: tuple | None
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
    input_cost = prompt_tokens * model.input_cost_per_token
    output_cost = completion_tokens * model.output_cost_per_token
    cost = input_cost + output_cost
    team_id = _team_id(caller.team_alias)
    custom_headers = {**caller.headers, "x-tracking-token": tracking}
    usage = {
        "completion_tokens": completion_tokens,
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
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
        "cache_hit": False if failure else None,
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


@dataclass
class _Batch:
    received_at: float
    hour_index: int
    payloads: list[dict[str, Any]]


def _batch_hour(rng: random.Random, hour_index: int, payloads: list[dict]) -> list[_Batch]:
    """Cut one hour's on-time events (sorted by endTime) into POSTs, arriving in order."""
    batches: list[_Batch] = []
    i, last = 0, 0.0
    while i < len(payloads):
        chunk = payloads[i : i + rng.randint(*BATCH_SIZES)]
        received = round(max(p["endTime"] for p in chunk) + rng.uniform(*FLUSH_DELAY), 6)
        last = max(received, round(last + 0.001, 6))
        batches.append(_Batch(last, hour_index, chunk))
        i += len(chunk)
    return batches


def _place_late(
    rng: random.Random, batches: list[_Batch], late: list[tuple[int, dict]], start: datetime
) -> None:
    """Add each late event to a batch 1..MAX_LATE_HOURS hours after its own hour."""
    for hour_index, payload in late:
        targets = [b for b in batches if hour_index < b.hour_index <= hour_index + MAX_LATE_HOURS]
        if targets:
            rng.choice(targets).payloads.append(payload)
        else:  # that later hour had no on-time events: the late event is a POST of its own
            at = (start + (hour_index + 1) * HOUR).timestamp() + rng.uniform(1.0, 60.0)
            batches.append(_Batch(round(at, 6), hour_index + 1, [payload]))
    batches.sort(key=lambda b: b.received_at)


def _place_duplicates(rng: random.Random, batches: list[_Batch], call_ids: set[str]) -> None:
    """Deliver each chosen payload once more, identical, in its batch or one shortly after."""
    originals = [
        (index, payload)
        for index, batch in enumerate(batches)
        for payload in batch.payloads
        if payload["litellm_call_id"] in call_ids
    ]
    for index, payload in originals:
        target = rng.choice(batches[index : index + DUPLICATE_SPREAD])
        target.payloads.append(copy.deepcopy(payload))


def _utc_hour(start: datetime) -> datetime:
    if start.tzinfo is None:
        raise ValueError(f"start must be timezone-aware (UTC), got naive {start}")
    return start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def generate_traffic(
    start: datetime, hours: int, events_per_hour: int = 200, seed: int = 7
) -> Traffic:
    """Sample traffic for ``hours`` UTC hours from ``start`` (floored to its hour).

    Every event starts, ends and is delivered inside ``[start, start + hours)``.
    """
    if hours < 1 or events_per_hour < 0:
        raise ValueError(f"need hours >= 1, events_per_hour >= 0: {hours}, {events_per_hour}")
    start = _utc_hour(start)
    rng = random.Random(seed)
    channels, weights = list(CHANNELS), list(CHANNELS.values())
    batches: list[_Batch] = []
    late: list[tuple[int, dict]] = []
    duplicated: set[str] = set()
    requests: list[ExpectedRequest] = []
    for hour_index in range(hours):
        hour = start + hour_index * HOUR
        on_time: list[dict] = []
        for _ in range(events_per_hour):
            caller = _pick_caller(rng, rng.choices(channels, weights)[0])
            model = MODELS[rng.choice(caller.models)]
            failure = rng.choice(FAILURES) if rng.random() < FAILURE_RATE else None
            began = round(hour.timestamp() + rng.uniform(0, LATEST_START_OFFSET), 6)
            payload = _build_payload(rng, began, caller, model, failure)
            is_late = hour_index < hours - 1 and rng.random() < LATE_RATE
            is_duplicate = not is_late and rng.random() < DUPLICATE_RATE
            if is_late:
                late.append((hour_index, payload))
            else:
                on_time.append(payload)
            if is_duplicate:
                duplicated.add(payload["litellm_call_id"])
            requests.append(_expected(payload, hour, caller, is_late, is_duplicate))
        on_time.sort(key=lambda p: p["endTime"])
        batches.extend(_batch_hour(rng, hour_index, on_time))
    _place_late(rng, batches, late, start)
    _place_duplicates(rng, batches, duplicated)
    return Traffic(
        start=start,
        hour_count=hours,
        batches=[(b.received_at, b.payloads) for b in batches],
        requests=requests,
    )


def _expected(
    payload: dict, hour: datetime, caller: _Caller, late: bool, duplicate: bool
) -> ExpectedRequest:
    who = expected_attribution(
        payload["metadata"]["requester_custom_headers"],
        payload["request_tags"],
        caller.key_alias,
        caller.team_alias,
    )
    return ExpectedRequest(
        request_key=payload["litellm_call_id"],
        hour=hour,
        model=payload["model"],
        provider=payload["custom_llm_provider"],
        cost=Decimal(repr(payload["response_cost"])),
        prompt_tokens=payload["prompt_tokens"],
        completion_tokens=payload["completion_tokens"],
        total_tokens=payload["total_tokens"],
        failed=payload["status"] == "failure",
        department=who.department,
        team=who.team,
        agent=who.agent,
        attribution_source=who.source,
        channel=caller.channel,
        deliveries=2 if duplicate else 1,
        late=late,
    )


def land_traffic(traffic: Traffic, data_dir: str | Path, writer_id: str = "sample") -> WriteResult:
    """Write every batch through the landing zone, as the receiver would have."""
    zone = LandingZone(data_dir, writer_id)
    total = WriteResult()
    for received_at, payloads in traffic.batches:
        result = zone.write_events(payloads, received_at=received_at)
        total.landed += result.landed
        total.quarantined += result.quarantined
        total.files.extend(result.files)
    return total


def encode_batch(payloads: Sequence[Mapping[str, Any]], log_format: str = "json_array") -> bytes:
    """A batch as LiteLLM's generic_api logger POSTs it: a JSON array, or NDJSON."""
    if log_format == "json_array":
        return json.dumps(list(payloads)).encode()
    if log_format == "ndjson":
        return "".join(json.dumps(p) + "\n" for p in payloads).encode()
    raise ValueError(f"log_format must be 'json_array' or 'ndjson', got {log_format!r}")
