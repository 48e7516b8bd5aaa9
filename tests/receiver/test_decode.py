import gzip
import json
import math

import pytest

from receiver.decode import BadRequest, decode_events, gunzip, split_json_array
from resources.landing_payload import Payload
from resources.landing_record import InvalidEvent
from tests.samples import LITELLM_FIXTURES


def fixture_bytes(name: str) -> bytes:
    return (LITELLM_FIXTURES / name).read_bytes()


def test_json_array_ndjson_and_single_bodies_decode_to_their_events():
    array = decode_events(fixture_bytes("generic_api_json_array_batch.json"))
    ndjson = decode_events(fixture_bytes("generic_api_ndjson_batch.ndjson"))
    single = decode_events(fixture_bytes("generic_api_failure_event.json"))
    assert [len(array), len(ndjson), len(single)] == [3, 3, 1]
    assert all(isinstance(e, Payload) and e.id for e in array + ndjson + single)


def test_an_event_is_decoded_to_the_read_fields_only():
    (event,) = decode_events(fixture_bytes("generic_api_failure_event.json"))
    assert event.error_information.error_class == "InternalServerError"
    assert event.metadata.requester_custom_headers["x-department"]
    assert not hasattr(event, "messages") and not hasattr(event.metadata, "user_api_key_hash")


def test_a_read_field_of_any_json_type_is_decoded_as_what_it_is():
    body = b'[{"id": 7, "model": {"secret": "x"}, "prompt_tokens": "12", "metadata": [],'
    body += b' "request_tags": {}, "cache_hit": "yes", "error_information": "none"}]'
    (event,) = decode_events(body)
    assert (event.id, event.model, event.prompt_tokens) == (7, {"secret": "x"}, "12")
    assert (event.metadata, event.request_tags, event.error_information) == ([], {}, "none")


def test_ndjson_as_litellm_sends_it_without_a_trailing_newline():
    events = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    body = "\n".join(json.dumps(e) for e in events).encode()
    assert decode_events(body) == [Payload(id="a"), Payload(id="b"), Payload(id="c")]


def test_a_bad_ndjson_line_becomes_an_invalid_event_at_its_place():
    body = b'{"id": "a"}\n{"id": "b", \n{"id": "c"}\n'
    events = decode_events(body)
    assert events[0] == Payload(id="a") and events[2] == Payload(id="c")
    assert isinstance(events[1], InvalidEvent)
    assert str(events[1]).startswith("NDJSON line 2: invalid JSON")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"  \n ", "empty body"),
        (b'[{"id": "a"},', "invalid JSON: Expecting value at line 1 column 14"),
        (b'"just a string"', "body is a JSON string"),
        (b"42", "body is a JSON number"),
        (b"\xff\xfe", "invalid JSON: Expecting value at line 1 column 1"),
        (b"[" * 100_000, "nested too deeply"),
        (b"9" * 5000, "Exceeds the limit"),
        (b"{not json\n{nor this", "and no line of it is a JSON object"),
        (b'[{\n"id": 1,\n', "Expecting property name enclosed in double quotes at line 2"),
    ],
)
def test_bodies_with_no_usable_json_are_refused_with_the_reason(body, reason):
    with pytest.raises(BadRequest) as refused:
        decode_events(body)
    assert refused.value.status == 400
    assert reason in refused.value.reason


def test_a_refusal_never_quotes_the_body():
    secret = "sk-live-do-not-log"
    with pytest.raises(BadRequest) as refused:
        decode_events(f'[{{"messages": "{secret}"'.encode())
    assert secret not in refused.value.reason


def test_gunzip_inflates_within_the_limit():
    body = fixture_bytes("generic_api_json_array_batch.json")
    assert gunzip(gzip.compress(body), limit=len(body)) == body


def test_gunzip_refuses_a_bomb_past_the_limit_without_inflating_it():
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    assert len(bomb) < 100_000
    with pytest.raises(BadRequest) as refused:
        gunzip(bomb, limit=1_000_000)
    assert refused.value.status == 413


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b"[1, 2, 3]")[:-9]])
def test_gunzip_refuses_corrupt_or_truncated_gzip(body):
    with pytest.raises(BadRequest) as refused:
        gunzip(body, limit=1_000_000)
    assert refused.value.status == 400
    assert "invalid gzip body" in refused.value.reason


def test_gunzip_inflates_every_member_of_a_multi_member_body():
    members = [b'{"id": "a"}\n', b'{"id": "b"}\n', b'{"id": "c"}\n']
    assert gunzip(b"".join(gzip.compress(m) for m in members), limit=1000) == b"".join(members)


def test_gunzip_counts_the_limit_over_all_members():
    body = gzip.compress(b"x" * 600) * 2
    with pytest.raises(BadRequest) as refused:
        gunzip(body, limit=1000)
    assert refused.value.status == 413


def test_gunzip_refuses_garbage_after_a_member():
    with pytest.raises(BadRequest) as refused:
        gunzip(gzip.compress(b"[]") + b"trailing", limit=1000)
    assert (refused.value.status, refused.value.reason[:27]) == (400, "invalid gzip body (member 2")


@pytest.mark.parametrize(
    ("body", "elements"),
    [
        (b"[]", []),
        (b"[ \n ]", []),
        (b'[{"a": 1}]', [b'{"a": 1}']),
        (b'[{"a": "],[{,"}, 2 , [3, [4]]]', [b'{"a": "],[{,"}', b" 2 ", b" [3, [4]]"]),
        (b'[{"q": "say \\"],\\" ok"}, 1]', [b'{"q": "say \\"],\\" ok"}', b" 1"]),
        (b"[1,,2]", [b"1", b"", b"2"]),  # each element then fails or lands alone
        (b'["\xff", 1]', [b'"\xff"', b" 1"]),
        (
            b"[" + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"]",
            [b'{"a":' * 5000 + b"1" + b"}" * 5000],
        ),
    ],
)
def test_split_json_array_finds_the_top_level_elements(body, elements):
    assert split_json_array(body) == elements


@pytest.mark.parametrize(
    "body", [b"[", b"[1, 2", b'[{"a": "unterminated]', b"[{]", b"[1] 2", b"[1]]", b"[" * 100_000]
)
def test_split_json_array_refuses_what_is_not_one_whole_array(body):
    assert split_json_array(body) is None


def test_each_element_is_decoded_alone_so_one_bad_event_costs_only_itself():
    body = b'[{"id": "a"}, {"id": "b",}, {"id": "\xff"}, NaN, {"id": "c"}]'
    a, b, c, d, e = decode_events(body)
    assert (a, e) == (Payload(id="a"), Payload(id="c"))
    assert isinstance(b, InvalidEvent)
    assert str(b).startswith("event 1: invalid JSON: Expecting property name")
    assert c == Payload(id="\udcff")  # the landing's text rule refuses it, naming the field
    assert math.isnan(d)
