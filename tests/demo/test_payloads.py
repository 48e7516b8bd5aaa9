"""Sample webhook payloads: LiteLLM's captured shape, exact cost, and the POST encodings."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pytest

from demo.payloads import (
    CACHE_READ_PRICE,
    CACHE_WRITE_PRICE,
    DEFAULT_CACHE_READ_PRICE,
    encode_batch,
)
from demo.traffic import generate_traffic
from resources.landing_record import landing_record
from resources.litellm_usage import cache_token_counts

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
HOURS = 24


# Top-level keys of the StandardLoggingPayload captured from LiteLLM 1.106.2
# (shared fixtures generic_api_*), without the long model map detail.
FIXTURE_KEYS = {
    "id",
    "litellm_call_id",
    "trace_id",
    "session_id",
    "call_type",
    "cache_hit",
    "stream",
    "status",
    "status_fields",
    "custom_llm_provider",
    "saved_cache_cost",
    "startTime",
    "endTime",
    "completionStartTime",
    "response_time",
    "model",
    "metadata",
    "cache_key",
    "response_cost",
    "cost_breakdown",
    "autorouter_savings",
    "autorouter_savings_estimate",
    "autorouter_baseline_observation",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "request_tags",
    "request_model_access_groups",
    "end_user",
    "api_base",
    "model_group",
    "model_id",
    "requester_ip_address",
    "user_agent",
    "messages",
    "response",
    "model_parameters",
    "hidden_params",
    "model_map_information",
    "error_str",
    "error_information",
    "response_cost_failure_debug_info",
    "zero_cost_diagnostic",
    "guardrail_information",
    "standard_built_in_tools_params",
}


@pytest.fixture(scope="module")
def traffic():
    return generate_traffic(START, HOURS, events_per_hour=200, seed=7)


def test_payloads_have_the_captured_litellm_shape(traffic):
    for payload in traffic.payloads():
        assert set(payload) <= FIXTURE_KEYS
        assert isinstance(payload["startTime"], float)
        assert payload["startTime"] <= payload["endTime"]
        assert payload["model"].split("/")[0] == payload["custom_llm_provider"]
        metadata = payload["metadata"]
        assert metadata["requester_custom_headers"]["x-tracking-token"].startswith(
            "TRACKING-SECRET-"
        )
        assert all(k == k.lower() for k in metadata["requester_custom_headers"])
        landing_record(payload, received_at=1.0)  # the landing contract accepts it
    providers = {p["custom_llm_provider"] for p in traffic.payloads()}
    assert {"openai", "anthropic", "azure", "bedrock", "vertex_ai"} <= providers
    assert len({p["model"] for p in traffic.payloads()}) >= 5


def test_cost_is_price_times_tokens_with_cached_prompt_tokens_cheaper(traffic):
    kinds = Counter()
    for payload in traffic.payloads():
        assert payload["total_tokens"] == payload["prompt_tokens"] + payload["completion_tokens"]
        if payload["cache_hit"]:  # LiteLLM's response cache answered: nothing was spent
            assert payload["response_cost"] == 0.0
            kinds["response cache hit"] += 1
            continue
        info = payload["model_map_information"]["model_map_value"]
        usage = payload["metadata"]["usage_object"] or {}
        read, written = cache_token_counts(usage)
        read_price = CACHE_READ_PRICE.get(payload["custom_llm_provider"], DEFAULT_CACHE_READ_PRICE)
        prompt = payload["prompt_tokens"]
        factor = (
            (
                (prompt - (read or 0) - (written or 0) + (read or 0) * read_price)
                + (written or 0) * CACHE_WRITE_PRICE
            )
            / prompt
            if prompt
            else 1.0
        )
        expected = (
            prompt * info["input_cost_per_token"] * factor
            + payload["completion_tokens"] * info["output_cost_per_token"]
        )
        assert payload["response_cost"] == pytest.approx(expected, rel=1e-12)
        kinds["prompt cache" if read else "uncached"] += 1
    assert min(kinds["response cache hit"], kinds["prompt cache"], kinds["uncached"]) > 0, kinds


def test_encode_batch_formats():
    traffic = generate_traffic(START, 1, events_per_hour=3)
    payloads = list(traffic.payloads())
    assert json.loads(encode_batch(payloads)) == payloads
    ndjson = encode_batch(payloads, "ndjson").decode().splitlines()
    assert [json.loads(line) for line in ndjson] == payloads
    with pytest.raises(ValueError):
        encode_batch(payloads, "xml")
