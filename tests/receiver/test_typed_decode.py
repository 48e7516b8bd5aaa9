"""The typed decode lands exactly what the old projection landed: ``json.loads`` of every
event and ``Mapping.get`` on it (``tests/landing_reference.py``), field by field, on every
captured LiteLLM body and on generated events with wrong types anywhere the landing reads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.decode import decode_events
from resources.landing import _ndjson, parse_landing_lines
from resources.landing_record import (
    LANDING_SCHEMA,
    READ_PATHS,
    InvalidEvent,
    attribution_header_map,
    landing_record,
    project_batch,
)
from tests.hostile import any_text
from tests.landing_reference import reference_events, reference_line, reference_outcome
from tests.samples import LITELLM_FIXTURES, captured_payloads

RECEIVED_AT = 1795350000.0
HEADER_MAPS = {
    "default": None,
    "renamed": attribution_header_map("x-department=x-team,x-agent=x-litellm-tags,x-team"),
}


def captured_bodies() -> list[Path]:
    """Every captured LiteLLM body of every version: JSON arrays, single objects, NDJSON."""
    bodies = sorted(
        path
        for path in LITELLM_FIXTURES.rglob("*")
        if path.suffix in (".json", ".ndjson") and "request_headers" not in path.name
    )
    assert {p.parent.name for p in bodies} >= {"1.106.2", "1.110.2", "litellm"}
    assert {p.suffix for p in bodies} == {".json", ".ndjson"}
    return bodies


def typed_outcome(event: Any, header_map: dict[str, str] | None) -> dict[str, Any] | str:
    try:
        return landing_record(event, RECEIVED_AT, header_map)
    except InvalidEvent as exc:
        return str(exc)


def assert_same_outcomes(typed: list[Any], reference: list[Any]) -> None:
    assert len(typed) == len(reference)
    for index, (new, old) in enumerate(zip(typed, reference, strict=True)):
        if isinstance(old, str) or isinstance(new, str):
            assert new == old, f"event {index}: quarantine reasons differ"
            continue
        assert set(new) == set(old) == set(LANDING_SCHEMA.names)
        for name in LANDING_SCHEMA.names:  # type and value: True is not 1, 1 is not 1.0
            assert (type(new[name]), new[name]) == (type(old[name]), old[name]), (
                f"event {index}: {name} differs"
            )


@pytest.mark.parametrize("header_map", HEADER_MAPS.values(), ids=HEADER_MAPS.keys())
@pytest.mark.parametrize(
    "path", captured_bodies(), ids=lambda p: str(p.relative_to(LITELLM_FIXTURES))
)
def test_every_captured_body_lands_as_the_reference_projection(path, header_map):
    body = path.read_bytes()
    typed = [typed_outcome(e, header_map) for e in decode_events(body)]
    reference = [reference_outcome(e, RECEIVED_AT, header_map) for e in reference_events(body)]
    assert typed and all(isinstance(outcome, dict) for outcome in reference)
    assert_same_outcomes(typed, reference)
    # The landed lines: other bytes (UTF-8 rather than \u escapes), the same JSON values, and
    # the same rows for the landing's reader.
    new_lines, old_lines = _ndjson(typed), b"".join(map(reference_line, reference))
    assert [json.loads(line) for line in new_lines.splitlines()] == [
        json.loads(line) for line in old_lines.splitlines()
    ]
    assert parse_landing_lines(new_lines, "typed") == parse_landing_lines(old_lines, "reference")
    batch = project_batch(decode_events(body), RECEIVED_AT, header_map)
    assert (batch.landed, batch.quarantined) == (len(reference), 0)


# --- generated events: any JSON value at any read path --------------------------------

TEMPLATES = captured_payloads()
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 0.0, "", 12.0, -1, 2**63, 2**64, 1.7e9, 1e300, "12", "finance"])
    | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
# The read paths, the objects on the way to them, and header names a map may read.
MUTABLE_PATHS = sorted(
    {
        *READ_PATHS,
        "metadata.usage_object.prompt_tokens_details",
        "metadata.requester_custom_headers.x-department",
        "metadata.requester_custom_headers.X-Team",
        "metadata.requester_custom_headers.x-litellm-tags",
    }
)


def put(event: dict, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    node = event
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


@st.composite
def mutated_events(draw) -> object:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not an event at all
    event = copy.deepcopy(TEMPLATES[draw(st.integers(0, len(TEMPLATES) - 1))])
    for path in draw(st.lists(st.sampled_from(MUTABLE_PATHS), max_size=4)):
        put(event, path, draw(json_values))
    return event


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    events=st.lists(mutated_events(), min_size=1, max_size=5),
    log_format=st.sampled_from(["json_array", "ndjson"]),
    header_map=st.sampled_from(list(HEADER_MAPS.values())),
)
def test_any_value_at_any_read_path_lands_or_is_refused_as_before(events, log_format, header_map):
    if log_format == "json_array":
        body = json.dumps(events).encode()
    else:  # NaN and Infinity are written as json.dumps writes them: not JSON to msgspec
        body = b"\n".join(json.dumps(e).encode() for e in events)
    if log_format == "ndjson" and not isinstance(events[0], dict):
        return  # LiteLLM's NDJSON starts with an object; "[" starts an array, and no object none
    typed = [typed_outcome(e, header_map) for e in decode_events(body)]
    reference = [reference_outcome(e, RECEIVED_AT, header_map) for e in events]
    assert_same_outcomes(typed, reference)
