"""Hostile and sloppy bodies against the real receiver on 127.0.0.1.

Whatever a client sends: no 5xx, the receiver stays healthy, a bad event is quarantined
while the rest of its batch lands, every event acknowledged as accepted is read back by
``litellm_webhook_events``' transform exactly once, and no secret reaches a file or the log.
"""

import copy
import gzip
import itertools
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.ingest import webhook_events_table
from resources.landing import LandingZone
from resources.landing_record import event_hour, landing_record
from tests.hostile import any_text
from tests.receiving import ReceiverProcess
from tests.samples import captured_payloads

TEMPLATES = captured_payloads()
HOURS = sorted({event_hour(landing_record(p, 0.0)) for p in TEMPLATES})
DEEP = 3000  # levels; Python's and msgspec's decoders stop near 1,000
HOLDABLE = 500  # levels any decoder here takes
_serial = itertools.count()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    with ReceiverProcess(tmp_path_factory.mktemp("hostile") / "data") as running:
        yield running


def event(tag: str, template: int = 0) -> dict:
    copied = copy.deepcopy(TEMPLATES[template % len(TEMPLATES)])
    copied["id"], copied["litellm_call_id"] = f"{tag}-{next(_serial)}", None
    return copied


def post(receiver, body: bytes, headers: dict | None = None) -> httpx.Response:
    headers = {**receiver.auth, "Content-Type": "application/json", **(headers or {})}
    return httpx.post(receiver.callback_url, content=body, headers=headers, timeout=30)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def with_raw(document: object, marks: dict[str, bytes]) -> bytes:
    """``document`` as JSON with each marker string replaced by raw bytes (deep nesting,
    invalid UTF-8) that ``json.dumps`` could never write."""
    body = json.dumps(document).encode()
    for mark, raw in marks.items():
        body = body.replace(json.dumps(mark).encode(), raw)
    return body


def read_back(receiver, prefix: str) -> list[str]:
    """Request ids under ``prefix`` that the pipeline's webhook transform reads."""
    read = LandingZone(receiver.data_dir).scan_hours(HOURS)
    assert read.malformed == [] and read.torn_bytes == 0
    ids = webhook_events_table(read).column("request_id").to_pylist()
    return [i for i in ids if i and i.startswith(prefix)]


def quarantined(receiver) -> list[dict]:
    """Every quarantine entry so far, oldest file first."""
    return [
        json.loads(line)
        for path in sorted((receiver.data_dir / "landing" / "_quarantine").rglob("*.ndjson"))
        for line in path.read_text().splitlines()
    ]


def reason_of(receiver, event_id: str) -> str:
    (reason,) = [q["reason"] for q in quarantined(receiver) if q.get("id") == event_id]
    return reason


def files_containing(receiver, secret: str) -> list[str]:
    """Every file of the receiver (its data and its log) whose bytes hold ``secret``."""
    needle = secret.encode()
    paths = [p for p in receiver.data_dir.rglob("*") if p.is_file()] + [receiver.log_path]
    return [str(p) for p in paths if needle in p.read_bytes()]


# --- one regression test per reported case -------------------------------------------


@pytest.mark.parametrize("where", ["top", "requester_metadata", "messages"])
def test_a_deeply_nested_event_is_quarantined_and_its_batch_lands(receiver, where):
    good, deep = event("deep-ok"), event("deep-bad")
    if where == "top":
        deep["extra"] = "DEEP"
    elif where == "requester_metadata":
        deep["metadata"]["requester_metadata"] = "DEEP"
    else:
        deep["messages"] = [{"role": "user", "content": "DEEP"}]
    response = post(receiver, with_raw([good, deep], {"DEEP": nested(1000)}))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "quarantined": 1}
    assert read_back(receiver, good["id"]) == [good["id"]]
    # An event that cannot be decoded has no ids to keep: its place and the reason.
    assert {"index": 1, "reason": "event 1: invalid JSON: nested too deeply"}.items() <= (
        quarantined(receiver)[-1].items()
    )


def test_nesting_the_decoder_can_hold_lands():
    from receiver.decode import decode_events

    shallow = event("shallow")
    shallow["metadata"]["requester_metadata"] = "DEEP"
    (decoded,) = decode_events(with_raw([shallow], {"DEEP": nested(500)}))
    assert landing_record(decoded, 0.0)["request_id"] == shallow["id"]


def test_a_body_that_is_only_nesting_is_refused_with_the_reason(receiver):
    response = post(receiver, nested(1000))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid JSON: nested too deeply"}


def test_invalid_utf8_in_a_kept_field_quarantines_that_event_only(receiver):
    good, bad_model, bad_id = event("utf8-ok"), event("utf8-model"), event("utf8-id")
    bad_model["model"] = "BAD"
    bad_id["id"] = bad_id["id"] + "BAD"
    bad_id["litellm_call_id"] = "utf8-id-call"
    body = with_raw([bad_model, good, bad_id], {"BAD": b'"gpt-\xff"'})
    response = post(receiver, body.replace(b'"' + bad_id["id"].encode() + b'"', b'"\xfe\xff"'))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "quarantined": 2}
    assert read_back(receiver, "utf8-") == [good["id"]]
    assert reason_of(receiver, bad_model["id"]).startswith("model is not valid Unicode text")


def test_the_reported_single_invalid_utf8_event_is_quarantined(receiver):
    response = post(receiver, b'[{"model":"\xff"}]')
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "quarantined": 1}


def test_invalid_utf8_in_a_dropped_field_does_not_cost_the_event(receiver):
    good = event("utf8-dropped")
    good["messages"] = [{"role": "user", "content": "BAD"}]
    response = post(receiver, with_raw([good], {"BAD": b'"\xff\xfe prompt"'}))
    assert response.json() == {"accepted": 1, "quarantined": 0}
    assert read_back(receiver, good["id"]) == [good["id"]]


@pytest.mark.parametrize("field", ["model", "request_tags", "x-department", "id"])
def test_a_lone_surrogate_is_quarantined_not_acknowledged_and_lost(receiver, field):
    good, bad = event("surrogate-ok"), event("surrogate-bad")
    bad["litellm_call_id"] = f"{bad['id']}-call"
    if field == "request_tags":
        bad["request_tags"] = ["team:x\ud800"]
    elif field == "x-department":
        bad["metadata"]["requester_custom_headers"]["x-department"] = "fin\ud800"
    else:
        bad[field] = "gpt-\ud800"
    response = post(receiver, json.dumps([good, bad]).encode())  # "\ud800" escapes
    assert response.json() == {"accepted": 1, "quarantined": 1}
    assert read_back(receiver, good["id"]) == [good["id"]]
    assert read_back(receiver, "surrogate-bad") == []


def test_every_member_of_a_multi_member_gzip_body_lands(receiver):
    events = [event("gzip-member") for _ in range(3)]
    body = b"".join(gzip.compress(json.dumps(e).encode() + b"\n") for e in events)
    response = post(receiver, body, {"Content-Encoding": "gzip"})
    assert response.json() == {"accepted": 3, "quarantined": 0}
    assert sorted(read_back(receiver, "gzip-member")) == sorted(e["id"] for e in events)


@pytest.mark.parametrize(
    "field", ["prompt_tokens", "completion_tokens", "total_tokens", "startTime", "response_cost"]
)
def test_a_quarantine_reason_never_quotes_the_value(receiver, field):
    secret = f"sk-SECRET-{field}-3f9a"
    bad = event("secret-reason") | {field: secret}
    response = post(receiver, json.dumps([bad]).encode())
    assert response.json() == {"accepted": 0, "quarantined": 1}
    assert reason_of(receiver, bad["id"]).startswith(field)
    assert files_containing(receiver, secret) == []


# --- generated bodies -----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
secrets = st.integers(0, 2**40).map(lambda n: f"sk-gen-{n:011x}")
# Where a secret may go without being a value the landing keeps by design.
CONTENT_PLACES = [
    ("messages",),
    ("response",),
    ("metadata", "user_api_key_hash"),
    ("metadata", "requester_metadata"),
    ("metadata", "requester_custom_headers", "authorization"),
    ("metadata", "requester_custom_headers", "x-api-key"),
    ("error_information", "error_message"),
    ("hidden_params", "additional_headers"),
]
# Kept fields where a secret of the wrong type must be refused without being quoted.
TYPED_PLACES = ["prompt_tokens", "completion_tokens", "total_tokens", "startTime", "endTime"]
TEXT_PLACES = ["model", "model_group", "custom_llm_provider", "status", "call_type"]


def put(document: dict, path: tuple[str, ...], value: object) -> None:
    for key in path[:-1]:
        if not isinstance(document.get(key), dict):
            document[key] = {}
        document = document[key]
    document[path[-1]] = value


@st.composite
def hostile_event(draw, tag: str, secret_log: list[str]) -> tuple[dict | object, dict, bool]:
    """An event, the raw bytes to splice into it, and whether it must land."""
    if draw(st.integers(0, 9)) == 0:  # arbitrary JSON, never an event with our id
        return draw(json_values.filter(lambda v: not isinstance(v, dict))), {}, False
    document, marks, must_land = event(tag, draw(st.integers(0, 10))), {}, True
    for _ in range(draw(st.integers(0, 3))):
        secret = draw(secrets)
        secret_log.append(secret)
        kind = draw(st.sampled_from(["content", "typed", "text-object", "tag-object"]))
        if kind == "content":
            put(document, draw(st.sampled_from(CONTENT_PLACES)), secret)
        elif kind == "typed":
            document[draw(st.sampled_from(TYPED_PLACES))] = secret
            must_land = False
        elif kind == "text-object":
            document[draw(st.sampled_from(TEXT_PLACES))] = {"value": secret}
            must_land = False
        else:
            document["request_tags"] = ["ok", [secret]]
            must_land = False
    damage = draw(st.sampled_from(["none", "none", "deep", "deep-kept", "bad-byte", "text"]))
    mark = f"@mark-{next(_serial)}@"
    if damage == "deep":  # in a field the landing drops: still past the decoder's limit
        put(document, draw(st.sampled_from(CONTENT_PLACES)), mark)
        marks[mark] = nested(draw(st.integers(1, DEEP)))
        must_land = must_land and marks[mark].count(b"{") < HOLDABLE
    elif damage == "deep-kept":
        document["metadata"]["spend_logs_metadata"] = mark
        marks[mark] = nested(draw(st.integers(1, DEEP)))
        must_land = must_land and marks[mark].count(b"{") < HOLDABLE
    elif damage == "bad-byte":
        kept = draw(st.booleans())
        put(document, ("model",) if kept else draw(st.sampled_from(CONTENT_PLACES)), mark)
        marks[mark] = b'"x\xff\xc3(y"'
        must_land = must_land and not kept
    elif damage == "text":
        text = draw(any_text)
        document[draw(st.sampled_from(TEXT_PLACES))] = text
        must_land = must_land and not any("\ud800" <= c <= "\udfff" for c in text)
    return document, marks, must_land


@st.composite
def hostile_body(draw) -> tuple[bytes, dict, str, list[str], list[str]]:
    """(body, headers, id prefix, ids that must land, secrets written into it)."""
    tag = f"gen{next(_serial)}"
    secret_log: list[str] = []
    drawn = draw(st.lists(hostile_event(tag, secret_log), min_size=1, max_size=5))
    log_format = draw(st.sampled_from(["json_array", "ndjson", "single"]))
    if log_format == "single":
        drawn = drawn[:1]
    parts = [with_raw(document, marks) for document, marks, _ in drawn]
    if log_format == "json_array":
        body = b"[" + b",".join(parts) + b"]"
        members = [body]
    else:
        members = [part + b"\n" for part in parts]
        body = b"".join(members)
    headers = {}
    if draw(st.booleans()):  # gzip, one member per event or one for the whole body
        split = draw(st.booleans())
        body = b"".join(gzip.compress(m) for m in (members if split else [body]))
        headers["Content-Encoding"] = "gzip"
    must_land = [d["id"] for d, _, land in drawn if land and isinstance(d, dict)]
    return body, headers, tag, must_land, secret_log


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # CI throws the same bodies every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(generated=hostile_body())
def test_generated_hostile_bodies(receiver, generated):
    body, headers, tag, must_land, secret_log = generated
    response = post(receiver, body, headers)
    assert response.status_code < 500, response.text
    assert httpx.get(f"{receiver.url}/healthz", timeout=5).json() == {"status": "ok"}
    landed = read_back(receiver, f"{tag}-")
    if response.status_code == 200:
        accepted = response.json()["accepted"]
        assert len(landed) == accepted  # exactly once: every acknowledged event, no more
        assert len(set(landed)) == len(landed)
        assert set(must_land) <= set(landed)
    else:
        assert response.status_code == 400 and landed == [] and not must_land
    for secret in secret_log:
        assert files_containing(receiver, secret) == []


def test_the_receiver_answered_no_5xx(receiver):
    # Runs last in this module: every test above used the same process.
    assert httpx.get(f"{receiver.url}/healthz").json() == {"status": "ok"}
    codes = {
        k: v for k, v in receiver.metrics().items() if k.startswith("spend_receiver_requests_total")
    }
    assert codes and not any('code="5' in k for k in codes), codes
