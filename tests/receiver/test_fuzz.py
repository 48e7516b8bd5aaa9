"""Fuzzed bodies against the running receiver: never a 5xx, never a lost valid event."""

import copy
import gzip
import itertools
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.ingest import webhook_events_table
from receiver.decode import BadRequest, decode_events
from resources.landing import LandingZone
from resources.landing_record import (
    PAYLOAD_FIELDS,
    InvalidEvent,
    event_hour,
    landing_record,
    project_batch,
)
from tests.receiving import ReceiverProcess
from tests.samples import captured_payloads

TEMPLATES = captured_payloads()
HOURS = sorted({event_hour(landing_record(p, 0.0)) for p in TEMPLATES})
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # CI explores the same bodies every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_serial = itertools.count()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = sorted({key for p in TEMPLATES for key in p})
NUMERIC_FIELDS = ["startTime", "endTime", "response_cost", "prompt_tokens", "total_tokens"]
numbers = (
    st.floats()
    | st.integers()
    | st.integers(min_value=2**62, max_value=10**400)
    | st.sampled_from([1e30, 1.7e12, 253402300800.0, -0.0, 2**63])
)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    with ReceiverProcess(tmp_path_factory.mktemp("fuzz") / "data") as running:
        yield running


def valid_event(template: int) -> dict:
    """A captured event under a new id: the receiver must land it, whatever surrounds it."""
    event = copy.deepcopy(TEMPLATES[template % len(TEMPLATES)])
    serial = next(_serial)
    event["id"], event["litellm_call_id"] = f"fuzz-{serial}", f"fuzz-call-{serial}"
    return event


@st.composite
def mutated_event(draw) -> object:
    """A captured event with some fields replaced by arbitrary JSON, or arbitrary JSON."""
    if draw(st.booleans()):
        return draw(json_values)
    event = valid_event(draw(st.integers(0, 10)))
    event["id"] = "mutant-" + event["id"]
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        event[key] = draw(json_values)
    for key in draw(st.lists(st.sampled_from(NUMERIC_FIELDS), max_size=2)):
        event[key] = draw(numbers)  # where range and overflow bugs hide
    return event


@st.composite
def batches(draw) -> tuple[list[dict], list[object]]:
    valid = [valid_event(draw(st.integers(0, 10))) for _ in range(draw(st.integers(0, 4)))]
    mutants = draw(st.lists(mutated_event(), max_size=4))
    mixed = draw(st.permutations(valid + mutants))
    return valid, mixed


def encode(events: list[object], log_format: str, garbage: bytes) -> bytes:
    if log_format == "json_array":
        return json.dumps(events).encode()
    lines = [json.dumps(e).encode() for e in events] + ([garbage] if garbage else [])
    return b"\n".join(lines)


def post(receiver, body: bytes, gzipped: bool = False) -> httpx.Response:
    headers = {**receiver.auth, "Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return httpx.post(receiver.callback_url, content=body, headers=headers, timeout=30)


def landable(event: object) -> bool:
    try:
        landing_record(event, 0.0)
    except InvalidEvent:
        return False
    return True


@FUZZ
@given(body=st.binary(max_size=4096), gzipped=st.booleans())
def test_arbitrary_bytes_never_get_a_5xx(receiver, body, gzipped):
    response = post(receiver, body, gzipped)
    assert response.status_code in (200, 400), response.text
    assert "error" in response.json() or "accepted" in response.json()


@FUZZ
@given(document=json_values)
def test_arbitrary_json_never_gets_a_5xx(receiver, document):
    response = post(receiver, json.dumps(document).encode())
    assert response.status_code in (200, 400), response.text


@FUZZ
@given(
    batch=batches(),
    log_format=st.sampled_from(["json_array", "ndjson"]),
    garbage=st.sampled_from([b"", b"{not json", b"[1, 2", b"\x00\x01"]),
    gzipped=st.booleans(),
)
def test_valid_events_land_whatever_surrounds_them(receiver, batch, log_format, garbage, gzipped):
    valid, mixed = batch
    response = post(receiver, encode(mixed, log_format, garbage), gzipped)
    assert response.status_code < 500, response.text
    if not valid:
        return  # a body of mutants alone may be refused whole: nothing valid was in it
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = sum(map(landable, mixed))
    assert answer["accepted"] == expected
    assert answer["accepted"] + answer["quarantined"] == len(mixed) + (
        1 if log_format == "ndjson" and garbage else 0
    )
    read = LandingZone(receiver.data_dir).read_hours(HOURS)
    assert read.malformed == [] and read.torn_bytes == 0
    assert {e["id"] for e in valid} <= set(read.table["request_id"].to_pylist())
    # whatever the receiver landed, the pipeline's first transform takes
    assert webhook_events_table(read.table).num_rows == read.table.num_rows


class RecordingDict(dict):
    """A payload that notes which of its fields are read."""

    read: set[str] = set()

    def get(self, key, default=None):
        RecordingDict.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        RecordingDict.read.add(key)
        return super().__getitem__(key)


def test_landing_record_reads_only_the_fields_the_fast_decoder_keeps():
    for payload in TEMPLATES:
        landing_record(RecordingDict(payload), 0.0)
    assert RecordingDict.read and RecordingDict.read <= set(PAYLOAD_FIELDS)


@FUZZ
@given(events=st.lists(mutated_event(), max_size=6), single=st.booleans())
def test_the_decoder_lands_exactly_what_json_loads_would(events, single):
    body = json.dumps(events[0] if single and events else events).encode()
    document = json.loads(body)
    if not isinstance(document, list | dict):
        with pytest.raises(BadRequest):
            decode_events(body)
        return
    expected = project_batch(document if isinstance(document, list) else [document], 1.0)
    assert project_batch(decode_events(body), 1.0) == expected


def test_the_receiver_is_still_healthy_after_the_fuzzing(receiver):
    # Runs last in this module: the fuzz tests above used the same process.
    assert httpx.get(f"{receiver.url}/healthz").json() == {"status": "ok"}
    assert receiver.metrics().get('spend_receiver_requests_total{code="500"}', 0) == 0
