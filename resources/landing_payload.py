"""What the landing reads of a LiteLLM StandardLoggingPayload, as typed structures.

``Payload`` and the structures under it name every field the landing reads and nothing
else: a decoder into them (``msgspec.json``) skips the rest of an event unbuilt, so prompts,
responses, API keys and price maps are never even turned into Python objects. They are the
allow-list itself: a test holds their paths equal to ``resources.landing_record.READ_PATHS``,
which another finds in every captured LiteLLM body.

A read field accepts a value of any JSON type, so that a wrong type never fails a whole
body: it is decoded as what it is (an object where a text was expected, a text where a
number was expected), and ``resources.landing_record`` refuses the event with a reason that
names the field and the JSON type. An object or array kept in such a field is built whole,
as it must be judged (an empty one counts as absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

# A field that should hold a text or a number, decoded as whatever JSON type it holds.
Value = str | int | float | bool | None | list[Any] | dict[str, Any]
# The JSON types other than an object, for a field that should hold one.
NotAnObject = str | int | float | bool | None | list[Any]


class ErrorInformation(msgspec.Struct, gc=False):
    error_class: Value = None
    error_code: Value = None


class PromptTokensDetails(msgspec.Struct, gc=False):
    cached_tokens: Value = None
    cache_creation_tokens: Value = None


class Usage(msgspec.Struct, gc=False):
    """The provider's usage LiteLLM keeps in ``metadata``: the prompt-cache counts only
    (``resources.litellm_usage`` says which path wins)."""

    prompt_tokens_details: PromptTokensDetails | NotAnObject = None
    cache_read_input_tokens: Value = None
    cache_creation_input_tokens: Value = None


class Metadata(msgspec.Struct, gc=False):
    # Every client header LiteLLM passes on (short texts); only the values of the headers the
    # landing keeps are judged and written.
    requester_custom_headers: dict[str, Value] | list[Any] | str | int | float | bool | None = None
    user_api_key_alias: Value = None
    user_api_key_team_alias: Value = None
    user_api_key_team_id: Value = None
    user_api_key_user_id: Value = None
    team_alias: Value = None  # read when user_api_key_team_alias is empty
    team_id: Value = None  # read when user_api_key_team_id is empty
    usage_object: Usage | NotAnObject = None


class Payload(msgspec.Struct, gc=False):
    """One event of a LiteLLM ``generic_api`` body, reduced to the fields the landing reads."""

    id: Value = None
    litellm_call_id: Value = None
    call_type: Value = None
    status: Value = None
    startTime: Value = None  # LiteLLM's names
    endTime: Value = None
    model: Value = None
    model_group: Value = None
    custom_llm_provider: Value = None
    response_cost: Value = None
    prompt_tokens: Value = None
    completion_tokens: Value = None
    total_tokens: Value = None
    cache_hit: Value = None
    request_tags: list[Value] | dict[str, Any] | str | int | float | bool | None = None
    metadata: Metadata | NotAnObject = None
    error_information: ErrorInformation | NotAnObject = None


# Every top-level field of a StandardLoggingPayload that the landing reads (the paths below
# them: ``resources.landing_record.READ_PATHS``).
PAYLOAD_FIELDS: tuple[str, ...] = Payload.__struct_fields__


class NotAPayload(ValueError):
    """A mapping that cannot be read as a payload; the message names where, never a value."""


def payload_of(event: Mapping[str, Any]) -> Payload:
    """A decoded mapping (``json.loads``, or a payload built in Python) as a ``Payload``.

    Only the fields of ``Payload``'s tree are read from it (so a name no decoder would take,
    such as a key with a lone surrogate, is never looked at); it is then judged exactly as a
    body's event is."""
    try:
        return msgspec.convert(_picked(event, Payload), Payload)
    except msgspec.ValidationError as exc:  # only Python callers can pass a non-JSON value
        where = str(exc).rpartition(" - at ")[2] or "$"
        raise NotAPayload(f"event is not JSON data at {where}") from None


def _picked(mapping: Mapping[str, Any], struct: type[msgspec.Struct]) -> dict[str, Any]:
    picked = {}
    for name, nested in _READ_FIELDS[struct]:
        value = mapping.get(name, _ABSENT)
        if value is _ABSENT:
            continue
        picked[name] = _picked(value, nested) if nested and isinstance(value, Mapping) else value
    return picked


def _read_fields(struct: type[msgspec.Struct]) -> tuple[tuple[str, Any], ...]:
    """Each field of ``struct`` with the structure its type holds when it is an object."""
    fields = []
    for field in msgspec.structs.fields(struct):
        members = getattr(field.type, "__args__", (field.type,))
        nested = [m for m in members if isinstance(m, type) and issubclass(m, msgspec.Struct)]
        fields.append((field.name, nested[0] if nested else None))
    return tuple(fields)


_ABSENT = object()
_READ_FIELDS = {
    struct: _read_fields(struct)
    for struct in (Payload, Metadata, Usage, PromptTokensDetails, ErrorInformation)
}
