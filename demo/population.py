"""Who calls the sample proxy, with what, and who the pipeline must say they are.

The sample traffic's population: the deployments behind the proxy with their list prices
(``MODELS``), the agents that name themselves (``AGENTS``) and the callers that do not
(``ANONYMOUS_CALLERS``). Attribution arrives through every channel the design allows
(``CHANNELS``: headers, both tag forms, the mapping file ``MAPPING_YAML``, a bare LiteLLM team
alias, nothing); ``pick_caller`` draws a ``Caller`` for a channel, and ``expected_attribution``
is the answer key's reading of the attribution rules.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

UNATTRIBUTED = "unattributed"


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
class Caller:
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


def pick_caller(rng: random.Random, channel: str) -> Caller:
    """A caller that says who it is through ``channel`` (one of ``CHANNELS``), if at all."""
    if channel not in ("header", "tag_x", "tag_colon"):
        key_alias, team_alias, user_id = rng.choice(ANONYMOUS_CALLERS[channel])
        return Caller(channel, key_alias, team_alias, user_id, tuple(MODELS), "Help with this")
    agent = rng.choices(AGENTS, weights=[a.weight for a in AGENTS])[0]
    who = {"department": agent.department, "team": agent.team, "agent": agent.agent}
    caller = Caller(
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


def _replace(caller: Caller, **changes: Any) -> Caller:
    return Caller(**{**caller.__dict__, **changes})
