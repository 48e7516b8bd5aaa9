"""The landing's projection as it was before the receiver decoded typed payloads: every
event through ``json.loads`` into dicts, then judged with ``Mapping.get``.

Kept here only as the reference the typed path (``receiver.decode`` into
``resources.landing_payload.Payload``, then ``resources.landing_record``) must equal, record
for record and reason for reason. The value rules are copied too, so a change to the
production rules shows up as a difference instead of moving both sides at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from resources.landing_record import DEFAULT_HEADER_MAP, InvalidEvent, landable_text
from resources.litellm_usage import CACHE_CREATION_PATHS, CACHE_READ_PATHS

EPOCH_RANGE = (946_684_800.0, 4_102_444_800.0)
MAX_TOKENS = 2**63 - 1
MAX_COST = 1_000_000.0
MAX_HEADER_VALUE = 256


def reference_loads(data: bytes) -> Any:
    """How the receiver's general path decoded a body or an event."""
    return json.loads(data.decode("utf-8", "surrogateescape"))


def reference_events(body: bytes) -> list[Any]:
    """The events of a well-formed captured body: a JSON array, one object, or NDJSON."""
    try:
        document = reference_loads(body)
    except ValueError:
        return [reference_loads(line) for line in body.split(b"\n") if line.strip()]
    return document if isinstance(document, list) else [document]


def reference_outcome(
    payload: Any, received_at: float, header_map: Mapping[str, str] | None = None
) -> dict[str, Any] | str:
    """The landed record of ``payload``, or the reason it is quarantined."""
    try:
        return reference_record(payload, received_at, header_map)
    except InvalidEvent as exc:
        return str(exc)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not landable_text(value):
            raise InvalidEvent(
                f"{name} is not valid Unicode text (invalid UTF-8 or a lone surrogate)"
            )
        return value
    if isinstance(value, int) and value.bit_length() > 64:
        raise InvalidEvent(f"{name} is an integer wider than 64 bits, not text")
    if isinstance(value, int | float):
        return str(value)
    raise InvalidEvent(f"{name} is a JSON {_json_type(value)}, not text")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _epoch(payload: Mapping[str, Any], key: str, required: bool) -> float | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise InvalidEvent(f"missing {key}")
        return None
    seconds = _finite(value)
    if seconds is None:
        raise InvalidEvent(f"{key} is a JSON {_json_type(value)}, not a finite epoch number")
    if not EPOCH_RANGE[0] <= seconds < EPOCH_RANGE[1]:
        raise InvalidEvent(f"{key} is not epoch seconds between 2000 and 2100")
    return seconds


def _cost(value: Any) -> str:
    if value is None:
        return "0.0"
    cost = _finite(value)
    if cost is None:
        raise InvalidEvent(f"response_cost is a JSON {_json_type(value)}, not a finite number")
    if cost < 0:
        raise InvalidEvent("response_cost is negative")
    if cost > MAX_COST:
        raise InvalidEvent(f"response_cost is above {MAX_COST:.0f} USD, implausible for a request")
    return repr(cost)


def _tokens(payload: Mapping[str, Any], key: str) -> int:
    value = payload.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidEvent(f"{key} is a JSON {_json_type(value)}, not an integer")
    if value < 0:
        raise InvalidEvent(f"{key} is negative")
    if value > MAX_TOKENS:
        raise InvalidEvent(f"{key} is too large for int64")
    return value


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if 0 <= value <= MAX_TOKENS else None


def _first(usage: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> int | None:
    for path in paths:
        value: Any = usage
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if (count := _count(value)) is not None:
            return count
    return None


def _cache_token_counts(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, Mapping):
        return None, None
    return _first(usage, CACHE_READ_PATHS), _first(usage, CACHE_CREATION_PATHS)


def reference_record(
    payload: Any, received_at: float, header_map: Mapping[str, str] | None = None
) -> dict[str, Any]:
    if isinstance(payload, InvalidEvent):
        raise payload
    if not isinstance(payload, Mapping):
        raise InvalidEvent(f"event is a JSON {_json_type(payload)}, not an object")
    request_id = _text(payload.get("id"), "id")
    call_id = _text(payload.get("litellm_call_id"), "litellm_call_id")
    if not request_id and not call_id:
        raise InvalidEvent("missing id and litellm_call_id")
    start = _epoch(payload, "startTime", required=True)
    end = _epoch(payload, "endTime", required=False)
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise InvalidEvent("metadata is not an object")
    custom = metadata.get("requester_custom_headers") or {}
    custom = {str(k).lower(): v for k, v in custom.items()} if isinstance(custom, Mapping) else {}
    tags = payload.get("request_tags") or []
    if not isinstance(tags, list):
        raise InvalidEvent("request_tags is not a list")
    error = payload.get("error_information")
    error = error if isinstance(error, Mapping) else {}
    cache_read, cache_creation = _cache_token_counts(metadata.get("usage_object"))
    return {
        "request_id": request_id,
        "litellm_call_id": call_id,
        "call_type": _text(payload.get("call_type"), "call_type"),
        "status": _text(payload.get("status"), "status") or "success",
        "start_time": start,
        "end_time": end if end is not None else start,
        "model": _text(payload.get("model"), "model"),
        "model_group": _text(payload.get("model_group"), "model_group"),
        "custom_llm_provider": _text(payload.get("custom_llm_provider"), "custom_llm_provider"),
        "response_cost": _cost(payload.get("response_cost")),
        "prompt_tokens": _tokens(payload, "prompt_tokens"),
        "completion_tokens": _tokens(payload, "completion_tokens"),
        "total_tokens": _tokens(payload, "total_tokens"),
        "cache_hit": payload.get("cache_hit")
        if isinstance(payload.get("cache_hit"), bool)
        else None,
        "request_tags": [_text(t, "a request tag") for t in tags if t is not None],
        "team_id": _text(
            metadata.get("user_api_key_team_id") or metadata.get("team_id"), "team_id"
        ),
        "team_alias": _text(
            metadata.get("user_api_key_team_alias") or metadata.get("team_alias"), "team_alias"
        ),
        "key_alias": _text(metadata.get("user_api_key_alias"), "key_alias"),
        "user_id": _text(metadata.get("user_api_key_user_id"), "user_id"),
        "headers": {
            landed: _text(custom[source], f"header {source}").strip()[:MAX_HEADER_VALUE]
            for landed, source in (header_map or DEFAULT_HEADER_MAP).items()
            if custom.get(source) not in (None, "")
        },
        "error_class": _text(error.get("error_class"), "error_class") or None,
        "error_code": _text(error.get("error_code"), "error_code") or None,
        "cache_read_tokens": cache_read,
        "cache_creation_tokens": cache_creation,
        "received_at": received_at,
    }


def reference_line(record: dict[str, Any]) -> bytes:
    """A landed line as the landing wrote it then."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
