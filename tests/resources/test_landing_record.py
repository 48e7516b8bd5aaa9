"""The landing projection: what of a LiteLLM payload is kept, and why an event is refused."""

import copy
import json
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resources.landing_record import (
    LANDING_SCHEMA,
    InvalidEvent,
    attribution_header_map,
    event_hour,
    landing_record,
    project_batch,
)
from tests.litellm_install import TESTED_VERSIONS
from tests.samples import LITELLM_FIXTURES

NOW = 1795350000.0


def test_landing_record_keeps_the_allow_list_only(payloads):
    record = landing_record(payloads[0], NOW)
    assert set(record) == set(LANDING_SCHEMA.names)
    assert record["response_cost"] == "0.00017999999999999998"  # shortest repr, exact
    assert record["headers"] == {
        "x-department": "finance",
        "x-team": "team-1",
        "x-agent": "invoice-bot",
        "x-litellm-tags": "projA,env:test",
    }
    text = json.dumps(record)
    for secret in ("hello number 1", "canned completion", "litellm_proxy_master_key", "127.0.0.1"):
        assert secret not in text


def test_tracking_headers_are_not_kept(payloads):
    payload = copy.deepcopy(payloads[0])
    payload["metadata"]["requester_custom_headers"]["x-tracking-token"] = "tok-123"
    assert "tok-123" not in json.dumps(landing_record(payload, NOW))


NOT_TEXT = "is not valid Unicode text (invalid UTF-8 or a lone surrogate)"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None, "litellm_call_id": None}, "missing id and litellm_call_id"),
        ({"startTime": None}, "missing startTime"),
        ({"startTime": "yesterday"}, "startTime is a JSON string, not a finite epoch number"),
        ({"response_cost": "0.1"}, "response_cost is a JSON string, not a finite number"),
        ({"response_cost": float("nan")}, "response_cost is a JSON number, not a finite number"),
        ({"response_cost": -1.0}, "response_cost is negative"),
        ({"prompt_tokens": -3}, "prompt_tokens is negative"),
        ({"prompt_tokens": "sk-SECRET"}, "prompt_tokens is a JSON string, not an integer"),
        ({"total_tokens": 1.5}, "total_tokens is a JSON number, not an integer"),
        ({"total_tokens": 10**30}, "total_tokens is too large for int64"),
        ({"startTime": 1.7e12}, "startTime is not epoch seconds between 2000 and 2100"),
        ({"startTime": 10**400}, "startTime is a JSON number, not a finite epoch number"),
        ({"endTime": -1}, "endTime is not epoch seconds between 2000 and 2100"),
        ({"response_cost": 10**400}, "response_cost is a JSON number, not a finite number"),
        ({"response_cost": 1e300}, "response_cost is above 1000000 USD, implausible for a request"),
        ({"model": {"prompt": "x"}}, "model is a JSON object, not text"),
        ({"id": 10**30}, "id is an integer wider than 64 bits, not text"),
        ({"request_tags": ["ok", ["nested"]]}, "a request tag is a JSON array, not text"),
        ({"model": "gpt-\ud800"}, f"model {NOT_TEXT}"),
        ({"model": "gpt-\udcff"}, f"model {NOT_TEXT}"),  # byte 0xff, as the decoder keeps it
        ({"request_tags": ["team:\udfff"]}, f"a request tag {NOT_TEXT}"),
        ({"id": "req-\ud83d"}, f"id {NOT_TEXT}"),
    ],
)
def test_invalid_events_say_why_naming_fields_and_types_only(payloads, change, reason):
    with pytest.raises(InvalidEvent) as invalid:
        landing_record(payloads[0] | change, NOW)
    assert str(invalid.value) == reason


def test_a_lone_surrogate_in_an_attribution_header_is_refused(payloads):
    payload = copy.deepcopy(payloads[0])
    payload["metadata"]["requester_custom_headers"]["x-department"] = "fin\ud800"
    with pytest.raises(InvalidEvent) as invalid:
        landing_record(payload, NOW)
    assert str(invalid.value) == f"header x-department {NOT_TEXT}"


def test_header_map_defaults_to_the_four_attribution_headers():
    assert attribution_header_map() == {
        "x-department": "x-department",
        "x-team": "x-team",
        "x-agent": "x-agent",
        "x-litellm-tags": "x-litellm-tags",
    }


def test_header_map_can_keep_fewer_headers_or_land_one_under_another_name(payloads):
    mapping = attribution_header_map(" X-Department = x-team , x-agent ")
    assert mapping == {"x-department": "x-team", "x-agent": "x-agent"}
    record = landing_record(payloads[0], NOW, mapping)
    assert record["headers"] == {"x-department": "team-1", "x-agent": "invoice-bot"}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("x-cost-center", "cannot land header 'x-cost-center'"),
        ("x-team=x-session-token", "looks like a credential"),
        ("x-agent=authorization", "looks like a credential"),
        ("x-agent=x-api-key", "looks like a credential"),
    ],
)
def test_header_map_refuses_unknown_names_and_credentials(spec, reason):
    with pytest.raises(ValueError, match=reason):
        attribution_header_map(spec)


def test_a_decoder_rejection_is_quarantined_with_its_reason_at_its_index(payloads):
    batch = project_batch([payloads[0], InvalidEvent("NDJSON line 2: bad"), payloads[1]], NOW)
    assert batch.landed == 2
    assert batch.rejects == [{"index": 1, "reason": "NDJSON line 2: bad", "received_at": NOW}]


def test_event_hour_rounds_to_the_millisecond_as_litellms_database_does(payloads):
    just_before_noon = datetime(2026, 3, 1, 11, 59, 59, 999600, tzinfo=timezone.utc)
    record = landing_record(payloads[0] | {"startTime": just_before_noon.timestamp()}, NOW)
    assert event_hour(record) == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def captured(version: str, name: str) -> list[dict]:
    text = (LITELLM_FIXTURES / version / name).read_text()
    body = json.loads(text)
    return body if isinstance(body, list) else [body]


@pytest.mark.parametrize("version", TESTED_VERSIONS)
def test_errors_and_caching_land_from_real_bodies_of_every_tested_version(version):
    def land(name: str) -> dict:
        (event,) = captured(version, name)
        return landing_record(event, NOW)

    failure = land("failure_event.json")
    assert (failure["error_class"], failure["error_code"]) == ("RateLimitError", "429")
    hit = land("cache_hit_event.json")
    assert hit["cache_hit"] is True and hit["response_cost"] == "0.0"
    openai = land("openai_cached_tokens_event.json")
    assert (openai["cache_read_tokens"], openai["cache_creation_tokens"]) == (1920, None)
    anthropic = land("anthropic_cache_read_event.json")
    assert (anthropic["cache_read_tokens"], anthropic["cache_creation_tokens"]) == (2048, 512)
    for success in captured(version, "success_batch.json"):  # error fields are "" on success
        record = landing_record(success, NOW)
        assert (record["error_class"], record["error_code"], record["cache_read_tokens"]) == (
            None,
            None,
            None,
        )


@given(
    hour=st.integers(0, 10**6),
    offset=st.floats(-0.002, 0.002) | st.floats(0, 3600),
)
def test_event_hour_is_the_hour_of_the_start_rounded_to_the_millisecond(hour, offset):
    start = 946_684_800.0 + hour * 3600 + offset
    expected = datetime.fromtimestamp(round(start, 3), tz=timezone.utc)
    assert event_hour({"start_time": start}) == expected.replace(minute=0, second=0, microsecond=0)
