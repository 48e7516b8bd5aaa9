"""What a landed line is: the allow-listed, validated projection of one LiteLLM
StandardLoggingPayload, and the reasons an event is quarantined instead.

A landed line keeps ids, times, model, cost, tokens, status, team/key aliases, request tags and
the attribution headers. Prompts, completions, API keys, key hashes, tracking headers and error
texts are never copied, because only the fields named here are. Costs are kept as the shortest
round-trip decimal string of LiteLLM's float (Python ``repr``) so sums can be exact. Where the
lines are written and how they are read back is ``resources.landing``'s.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

import pyarrow as pa

from resources.landing_payload import (
    PAYLOAD_FIELDS,
    ErrorInformation,
    Metadata,
    NotAPayload,
    Payload,
    payload_of,
)
from resources.litellm_usage import CACHE_CREATION_PATHS, CACHE_READ_PATHS, cache_token_counts

# The attribution headers a landed line can carry (the reader's schema). A deployment may
# fill one from a differently named request header: see ``attribution_header_map``.
DEFAULT_ATTRIBUTION_HEADERS = ("x-department", "x-team", "x-agent", "x-litellm-tags")
MAX_HEADER_VALUE = 256
# Header names that carry credentials or tracking tokens are never kept, whatever the config.
_SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|password|api[-_]?key", re.I)

# The explicit read schema of a landed line (and the allow-list of what is written).
HEADERS_TYPE = pa.struct([(name, pa.string()) for name in DEFAULT_ATTRIBUTION_HEADERS])
LANDING_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("litellm_call_id", pa.string()),
        ("call_type", pa.string()),
        ("status", pa.string()),
        ("start_time", pa.float64()),
        ("end_time", pa.float64()),
        ("model", pa.string()),
        ("model_group", pa.string()),
        ("custom_llm_provider", pa.string()),
        ("response_cost", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("cache_hit", pa.bool_()),
        ("request_tags", pa.list_(pa.string())),
        ("team_id", pa.string()),
        ("team_alias", pa.string()),
        ("key_alias", pa.string()),
        ("user_id", pa.string()),
        ("headers", HEADERS_TYPE),
        ("error_class", pa.string()),
        ("error_code", pa.string()),
        ("cache_read_tokens", pa.int64()),
        ("cache_creation_tokens", pa.int64()),
        ("received_at", pa.float64()),
    ]
)


class InvalidEvent(ValueError):
    """An event that cannot be landed; the message is the quarantine reason."""


def landable_text(value: str) -> bool:
    """The one rule for what text the landing keeps: Unicode that UTF-8 can encode, i.e.
    no lone surrogate (a JSON ``"\\ud800"`` escape, or a byte the decoder could not read as
    UTF-8). The landing's readers (pyarrow, DuckDB) take exactly such text back."""
    return value.isascii() or _SURROGATE.search(value) is None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: Any, name: str) -> str | None:
    """A text field; a number is taken as its text, an object or list is refused (it could
    carry content, and its repr is no id or name). Reasons name the field and the JSON
    type, never the value: a wrong-typed field may hold a secret."""
    if type(value) is str and value.isascii():  # nearly every id and name
        return value
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
    if isinstance(value, int | float):  # bool included
        return str(value)
    raise InvalidEvent(f"{name} is a JSON {json_type(value)}, not text")


def json_type(value: Any) -> str:
    """The JSON type of a decoded value, for a reason that must not quote the value."""
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


# Epoch seconds LiteLLM could plausibly send. Outside it an event has no usable hour
# (a millisecond epoch lands here too), so it is quarantined instead of filed in year 5138.
EPOCH_RANGE = (946_684_800.0, 4_102_444_800.0)  # 2000-01-01 .. 2100-01-01 UTC
MAX_TOKENS = 2**63 - 1  # the lake's int64
MAX_COST = 1_000_000.0  # USD for one request: above it the number is broken, not spend


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None if it is not a JSON number that fits one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _epoch(value: Any, key: str, required: bool) -> float | None:
    if type(value) is float and EPOCH_RANGE[0] <= value < EPOCH_RANGE[1]:  # nearly always
        return value
    if value is None:
        if required:
            raise InvalidEvent(f"missing {key}")
        return None
    seconds = _finite(value)
    if seconds is None:
        raise InvalidEvent(f"{key} is a JSON {json_type(value)}, not a finite epoch number")
    if not EPOCH_RANGE[0] <= seconds < EPOCH_RANGE[1]:
        raise InvalidEvent(f"{key} is not epoch seconds between 2000 and 2100")
    return seconds


def _cost(value: Any) -> str:
    if type(value) is float and 0.0 <= value <= MAX_COST:  # finite: NaN compares false
        return repr(value)
    if value is None:
        return "0.0"
    cost = _finite(value)
    if cost is None:
        raise InvalidEvent(f"response_cost is a JSON {json_type(value)}, not a finite number")
    if cost < 0:
        raise InvalidEvent("response_cost is negative")
    if cost > MAX_COST:
        raise InvalidEvent(f"response_cost is above {MAX_COST:.0f} USD, implausible for a request")
    return repr(cost)


def _tokens(value: Any, key: str) -> int:
    if type(value) is int and 0 <= value <= MAX_TOKENS:  # nearly always
        return value
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidEvent(f"{key} is a JSON {json_type(value)}, not an integer")
    if value < 0:
        raise InvalidEvent(f"{key} is negative")
    if value > MAX_TOKENS:
        raise InvalidEvent(f"{key} is too large for int64")
    return value


def attribution_header_map(spec: str | Sequence[str] | None = None) -> dict[str, str]:
    """Which request header fills each landed attribution header.

    ``spec`` lists entries ``name`` (keep request header ``name``) or ``landed=source``
    (land request header ``source`` as ``landed``), e.g. ``"x-department=x-cost-center,
    x-team,x-agent"``. Only the four headers the pipeline reads can be landed, and a
    header that looks like a credential is refused.
    """
    if spec is None:
        return {name: name for name in DEFAULT_ATTRIBUTION_HEADERS}
    entries = spec.split(",") if isinstance(spec, str) else list(spec)
    mapping: dict[str, str] = {}
    for entry in (e.strip().lower() for e in entries):
        if not entry:
            continue
        landed, _, source = (part.strip() for part in entry.partition("="))
        source = source or landed
        if landed not in DEFAULT_ATTRIBUTION_HEADERS:
            raise ValueError(
                f"cannot land header {landed!r}: the pipeline reads only "
                f"{', '.join(DEFAULT_ATTRIBUTION_HEADERS)} (use 'landed=source' to rename)"
            )
        if _SECRET_HEADER.search(source):
            raise ValueError(f"refusing to land header {source!r}: it looks like a credential")
        mapping[landed] = source
    return mapping


# Every path of a StandardLoggingPayload the landing reads, dotted from the event's top: the
# leaves of ``resources.landing_payload.Payload``, which a decoder builds and nothing else.
# tests/receiver/test_litellm_fields.py finds each in every captured body of every tested
# LiteLLM version (where that kind of event carries it), so a field a new version renames
# fails a test instead of landing as a silent null.
ERROR_READ_PATHS = ("error_information.error_class", "error_information.error_code")
CACHE_TOKEN_READ_PATHS = tuple(
    "metadata.usage_object." + ".".join(path) for path in CACHE_READ_PATHS + CACHE_CREATION_PATHS
)
READ_PATHS = (
    *PAYLOAD_FIELDS,
    "metadata.requester_custom_headers",
    "metadata.user_api_key_alias",
    "metadata.user_api_key_team_alias",
    "metadata.user_api_key_team_id",
    "metadata.user_api_key_user_id",
    "metadata.team_alias",
    "metadata.team_id",
    "metadata.usage_object",
    *ERROR_READ_PATHS,
    *CACHE_TOKEN_READ_PATHS,
)


def landing_record(
    payload: Any,
    received_at: float,
    header_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate one event and project it onto the landing allow-list.

    ``payload`` is a ``Payload`` (what the receiver decodes a body into), a mapping (read as
    a ``Payload``, as ``json.loads`` would give it), or an ``InvalidEvent`` a decoder made."""
    if type(payload) is not Payload:
        payload = _as_payload(payload)
    request_id = _text(payload.id, "id")
    call_id = _text(payload.litellm_call_id, "litellm_call_id")
    if not request_id and not call_id:
        raise InvalidEvent("missing id and litellm_call_id")
    start = _epoch(payload.startTime, "startTime", required=True)
    end = _epoch(payload.endTime, "endTime", required=False)
    metadata = payload.metadata or _NO_METADATA  # an empty value of any type is no metadata
    if type(metadata) is not Metadata:
        raise InvalidEvent("metadata is not an object")
    custom = metadata.requester_custom_headers
    custom = {k.lower(): v for k, v in custom.items()} if type(custom) is dict else {}
    tags = payload.request_tags or []
    if type(tags) is not list:
        raise InvalidEvent("request_tags is not a list")
    error = payload.error_information
    error = error if type(error) is ErrorInformation else _NO_ERROR
    cache_read, cache_creation = cache_token_counts(metadata.usage_object)
    cache_hit = payload.cache_hit
    return {
        "request_id": request_id,
        "litellm_call_id": call_id,
        "call_type": _text(payload.call_type, "call_type"),
        "status": _text(payload.status, "status") or "success",
        "start_time": start,
        "end_time": end if end is not None else start,
        "model": _text(payload.model, "model"),
        "model_group": _text(payload.model_group, "model_group"),
        "custom_llm_provider": _text(payload.custom_llm_provider, "custom_llm_provider"),
        "response_cost": _cost(payload.response_cost),
        "prompt_tokens": _tokens(payload.prompt_tokens, "prompt_tokens"),
        "completion_tokens": _tokens(payload.completion_tokens, "completion_tokens"),
        "total_tokens": _tokens(payload.total_tokens, "total_tokens"),
        "cache_hit": cache_hit if isinstance(cache_hit, bool) else None,
        "request_tags": [
            t if type(t) is str and t.isascii() else _text(t, "a request tag")
            for t in tags
            if t is not None
        ],
        "team_id": _text(metadata.user_api_key_team_id or metadata.team_id, "team_id"),
        "team_alias": _text(metadata.user_api_key_team_alias or metadata.team_alias, "team_alias"),
        "key_alias": _text(metadata.user_api_key_alias, "key_alias"),
        "user_id": _text(metadata.user_api_key_user_id, "user_id"),
        "headers": {
            landed: value.strip()[:MAX_HEADER_VALUE]
            if type(value) is str and value.isascii()
            else _header(value, source)
            for landed, source in (header_map or DEFAULT_HEADER_MAP).items()
            if (value := custom.get(source)) not in (None, "")
        },
        "error_class": _text(error.error_class, "error_class") or None,
        "error_code": _text(error.error_code, "error_code") or None,
        "cache_read_tokens": cache_read,
        "cache_creation_tokens": cache_creation,
        "received_at": received_at,
    }


def _header(value: Any, source: str) -> str:
    return _text(value, f"header {source}").strip()[:MAX_HEADER_VALUE]


_NO_METADATA = Metadata()
_NO_ERROR = ErrorInformation()


def _as_payload(event: Any) -> Payload:
    if isinstance(event, InvalidEvent):  # a decoder already knows why it is unusable
        raise event
    if isinstance(event, Payload):
        return event
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"event is a JSON {json_type(event)}, not an object")
    try:
        return payload_of(event)
    except NotAPayload as exc:
        raise InvalidEvent(str(exc)) from None


DEFAULT_HEADER_MAP = attribution_header_map()


def event_hour(record: Mapping[str, Any]) -> datetime:
    """The UTC hour of ``startTime`` to the millisecond, as LiteLLM's database stores it
    (``timestamp(3)`` rounds): 11:59:59.9996 is hour 12 in both sources."""
    return _hour_start(_hour_number(record["start_time"]))


def _hour_number(start: float) -> int:
    """Hours since the epoch of ``start`` rounded to the millisecond."""
    hour = int(start // 3600)
    if 0.001 < start - hour * 3600 < 3599.999:  # rounding cannot cross an hour: skip it
        return hour
    return int(round(start, 3) // 3600)


def _hour_start(number: int) -> datetime:
    return datetime.fromtimestamp(number * 3600, tz=timezone.utc)


@dataclass
class LandingBatch:
    """Validated, allow-listed records by event hour, and the rejects with their reasons."""

    by_hour: dict[datetime, list[dict[str, Any]]] = field(default_factory=dict)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    received_at: float = 0.0

    @property
    def landed(self) -> int:
        return sum(map(len, self.by_hour.values()))

    @property
    def quarantined(self) -> int:
        return len(self.rejects)

    @classmethod
    def merge(cls, batches: Sequence[LandingBatch]) -> LandingBatch:
        """One batch holding all of ``batches`` (a group commit writes it as one)."""
        merged = cls(received_at=max((b.received_at for b in batches), default=0.0))
        for batch in batches:
            for hour, records in batch.by_hour.items():
                merged.by_hour.setdefault(hour, []).extend(records)
            merged.rejects.extend(batch.rejects)
        return merged


def project_batch(
    payloads: Iterable[Any],
    received_at: float | None = None,
    header_map: Mapping[str, str] | None = None,
) -> LandingBatch:
    """Validate and project a batch; an invalid event becomes a reject, never an exception."""
    batch = LandingBatch(received_at=time.time() if received_at is None else received_at)
    hours: dict[int, list[dict[str, Any]]] = {}  # by hour number: a batch has few hours
    for index, payload in enumerate(payloads):
        try:
            record = landing_record(payload, batch.received_at, header_map)
        except InvalidEvent as exc:
            batch.rejects.append(quarantine_entry(payload, index, str(exc), batch.received_at))
            continue
        number = _hour_number(record["start_time"])
        if number not in hours:
            hours[number] = batch.by_hour.setdefault(_hour_start(number), [])
        hours[number].append(record)
    return batch


def quarantine_entry(payload: Any, index: int, reason: str, received_at: float) -> dict[str, Any]:
    """Where a rejected event was and why, with its ids only: its body may hold content."""
    ids = {}
    if isinstance(payload, Payload | Mapping):  # text ids only: anything else may be the problem
        read = payload.get if isinstance(payload, Mapping) else partial(getattr, payload)
        ids = {
            k: v
            for k in ("id", "litellm_call_id")
            if isinstance(v := read(k), str) and landable_text(v)
        }
    return {"index": index, "reason": reason, "received_at": received_at, **ids}
