"""Every field the pipeline reads is where the pipeline looks for it, in every captured body
of every tested LiteLLM version: a renamed or moved field fails here, by name and file.

The bodies are ``tests/fixtures/litellm/<version>/`` (written by ``python -m
tests.litellm_capture``) and the first 1.106.2 captures at the top of
``tests/fixtures/litellm/``. A path must be present (the key exists) in every event of the
kinds of body that carry it, and not null unless ``MAY_BE_NULL`` says when LiteLLM sends null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from resources.landing_payload import Payload
from resources.landing_record import CACHE_TOKEN_READ_PATHS, ERROR_READ_PATHS, READ_PATHS
from tests.litellm_install import PINNED_VERSION, TESTED_VERSIONS
from tests.samples import LITELLM_FIXTURES

# The paths the landing reads (its allow-list, resources.landing_record.READ_PATHS). Prompt-cache
# token counts are in the usage object LiteLLM puts under metadata (hidden_params.usage_object
# is null in every captured body of both versions).
ERROR_PATHS = ERROR_READ_PATHS
OPENAI_PROMPT_CACHE_PATHS = ("metadata.usage_object.prompt_tokens_details.cached_tokens",)
ANTHROPIC_PROMPT_CACHE_PATHS = CACHE_TOKEN_READ_PATHS  # Anthropic's usage fills all four
# In every event. The error fields are there on successes too, as empty strings, but only a
# failure must carry them; the prompt-cache counts only where the provider reported them.
EVERY_EVENT_PATHS = tuple(
    path for path in READ_PATHS if path not in (*ERROR_PATHS, *ANTHROPIC_PROMPT_CACHE_PATHS)
)
PROMPT_CACHE_PATHS = {
    "openai_prompt_cache": OPENAI_PROMPT_CACHE_PATHS,
    "anthropic_prompt_cache": ANTHROPIC_PROMPT_CACHE_PATHS,
}

# The read paths LiteLLM legitimately sends as null, and when.
MAY_BE_NULL = {
    # true when LiteLLM's response cache answered, false on a failure, null on any other success.
    "cache_hit": "a success not answered from the response cache",
    # The key's own attributes: null for the master key (captured here, as the proxy has no
    # database for virtual keys) and for keys created without them; the master key's user
    # is "default_user_id".
    "metadata.user_api_key_alias": "a key without an alias",
    "metadata.user_api_key_team_alias": "a key without a team, or a team without an alias",
    "metadata.user_api_key_team_id": "a key without a team",
    "metadata.user_api_key_user_id": "a key without a user",
    # Read when the key's team fields are empty.
    "metadata.team_alias": "a request without a team, or a team without an alias",
    "metadata.team_id": "a request without a team",
}

# A batch's events may be successes and failures; the other bodies are one event each.
BODY_KINDS = {
    "success_batch.json": "batch",
    "success_batch.ndjson": "batch",
    "cache_hit_event.json": "cache_hit",
    "failure_event.json": "failure",
    "openai_cached_tokens_event.json": "openai_prompt_cache",
    "anthropic_cache_read_event.json": "anthropic_prompt_cache",
    "anthropic_cache_write_event.json": "anthropic_prompt_cache",
}
# The first captures of 1.106.2, kept where other tests read them.
FIRST_CAPTURE_KINDS = {
    "generic_api_json_array_batch.json": "batch",
    "generic_api_ndjson_batch.ndjson": "batch",
    "generic_api_failure_event.json": "failure",
}
HEADERS_FILE = "request_headers.json"
_MISSING = object()


def lookup(event: dict[str, Any], path: str) -> Any:
    """The value at dotted ``path``, or ``_MISSING`` when a key on the way is absent."""
    node: Any = event
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def events_of(text: str, ndjson: bool) -> list[dict[str, Any]]:
    """The events of one POST body: a JSON array, NDJSON lines, or one object."""
    if ndjson:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    body = json.loads(text)
    return body if isinstance(body, list) else [body]


def required_paths(event: dict[str, Any], kind: str) -> tuple[str, ...]:
    errors = ERROR_PATHS if event.get("status") == "failure" else ()
    return (*EVERY_EVENT_PATHS, *errors, *PROMPT_CACHE_PATHS.get(kind, ()))


def read_path_problems(events: list[dict[str, Any]], kind: str) -> list[str]:
    """Each required read path missing from an event, or null where LiteLLM never sends null."""
    problems = []
    for index, event in enumerate(events):
        for path in required_paths(event, kind):
            value = lookup(event, path)
            if value is _MISSING:
                problems.append(f"event {index}: {path} is missing")
            elif value is None and path not in MAY_BE_NULL:
                problems.append(f"event {index}: {path} is null")
    return problems


@dataclass(frozen=True)
class CapturedBody:
    version: str
    path: Path
    kind: str

    def events(self) -> list[dict[str, Any]]:
        return events_of(self.path.read_text(), ndjson=self.path.suffix == ".ndjson")


def captured_bodies() -> list[CapturedBody]:
    bodies = [
        CapturedBody(version, LITELLM_FIXTURES / version / name, kind)
        for version in TESTED_VERSIONS
        for name, kind in BODY_KINDS.items()
    ]
    bodies += [
        CapturedBody(PINNED_VERSION, LITELLM_FIXTURES / name, kind)
        for name, kind in FIRST_CAPTURE_KINDS.items()
    ]
    return bodies


BODIES = captured_bodies()


def bodies_of(*kinds: str) -> list[CapturedBody]:
    return [body for body in BODIES if body.kind in kinds]


def events_where(status: str, *kinds: str) -> list[tuple[CapturedBody, dict[str, Any]]]:
    """Each event of that ``status`` in the bodies of those kinds, with its body."""
    return [
        (body, event)
        for body in bodies_of(*kinds)
        for event in body.events()
        if event["status"] == status
    ]


def body_id(body: CapturedBody) -> str:
    return f"{body.version}/{body.path.name}"


@pytest.mark.parametrize("version", TESTED_VERSIONS)
def test_every_tested_version_has_every_kind_of_body(version):
    directory = LITELLM_FIXTURES / version
    found = {path.name for path in directory.iterdir()} if directory.is_dir() else set()
    assert found == {*BODY_KINDS, HEADERS_FILE}, (
        f"run `python -m tests.litellm_capture {version}` to capture {directory}"
    )
    headers = json.loads((directory / HEADERS_FILE).read_text())
    assert headers["user-agent"] == f"litellm/{version}"


def test_read_paths_are_unique_and_each_required_somewhere():
    assert len(set(READ_PATHS)) == len(READ_PATHS)
    required = {*EVERY_EVENT_PATHS, *ERROR_PATHS, *ANTHROPIC_PROMPT_CACHE_PATHS}
    assert required == set(READ_PATHS)
    assert set(MAY_BE_NULL) <= set(READ_PATHS)


def struct_paths(struct: type[msgspec.Struct], prefix: str = "") -> set[str]:
    """Every dotted path a typed structure decodes: its fields and those of the structures
    under them (any ``Struct`` a field's type may be)."""
    paths = set()
    for field in msgspec.structs.fields(struct):
        path = prefix + field.name
        paths.add(path)
        for member in getattr(field.type, "__args__", (field.type,)):
            if isinstance(member, type) and issubclass(member, msgspec.Struct):
                paths |= struct_paths(member, path + ".")
    return paths


def test_the_decoder_builds_exactly_the_read_paths():
    # The only object on the way to read paths that is not itself read whole.
    on_the_way = {"metadata.usage_object.prompt_tokens_details"}
    assert struct_paths(Payload) == set(READ_PATHS) | on_the_way


@pytest.mark.parametrize("body", BODIES, ids=body_id)
def test_every_read_path_is_present(body):
    events = body.events()
    assert events
    assert read_path_problems(events, body.kind) == []


# What each kind of body says through those paths: the facts a parser of them relies on.


def event_id(body_and_event: tuple[CapturedBody, dict[str, Any]]) -> str:
    body, event = body_and_event
    return f"{body_id(body)}:{event['litellm_call_id'][:8]}"


SUCCESSES = events_where("success", "batch", "openai_prompt_cache", "anthropic_prompt_cache")
FAILURES = events_where("failure", "batch", "failure")


@pytest.mark.parametrize("body_and_event", SUCCESSES, ids=event_id)
def test_a_success_has_no_cache_hit_and_empty_error_strings(body_and_event):
    _, event = body_and_event
    assert event["cache_hit"] is None
    # Not null: empty strings, which mean "no error".
    error = event["error_information"]
    assert (error["error_class"], error["error_code"]) == ("", "")
    assert event["response_cost"] > 0


@pytest.mark.parametrize("body", bodies_of("cache_hit"), ids=body_id)
def test_a_response_cache_hit_costs_nothing_and_keeps_its_tokens(body):
    (event,) = body.events()
    assert (event["status"], event["cache_hit"]) == ("success", True)
    assert event["response_cost"] == 0.0
    assert event["saved_cache_cost"] > 0  # what the provider call would have cost
    assert event["prompt_tokens"] > 0 and event["completion_tokens"] > 0
    # Its own id: the cached response's id, then "_cache_hit" and the time of the hit.
    assert "_cache_hit" in event["id"]


@pytest.mark.parametrize("body_and_event", FAILURES, ids=event_id)
def test_a_failure_carries_error_class_and_http_code(body_and_event):
    _, event = body_and_event
    assert event["cache_hit"] is False
    error = event["error_information"]
    assert error["error_class"] in {"RateLimitError", "InternalServerError"}
    assert error["error_code"].isdigit()  # the HTTP status, as a string
    assert event["response_cost"] == 0.0
    assert (event["prompt_tokens"], event["completion_tokens"]) == (0, 0)
    assert event["metadata"]["usage_object"] == {}


@pytest.mark.parametrize(
    "body", bodies_of("openai_prompt_cache", "anthropic_prompt_cache"), ids=body_id
)
def test_prompt_cache_tokens_are_in_metadata_usage_object_only(body):
    (event,) = body.events()
    usage = event["metadata"]["usage_object"]
    assert event["hidden_params"]["usage_object"] is None
    assert not {"cached_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"} & set(
        event
    )
    # prompt_tokens already counts the cached tokens, read and written: never add them again.
    assert event["prompt_tokens"] == usage["prompt_tokens"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    if body.kind == "openai_prompt_cache":
        assert cached > 0
        assert "cache_read_input_tokens" not in usage
    else:
        assert cached == usage["cache_read_input_tokens"]
        assert usage["cache_creation_input_tokens"] > 0
        assert usage["prompt_tokens"] > cached + usage["cache_creation_input_tokens"]
