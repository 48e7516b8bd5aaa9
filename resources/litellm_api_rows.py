"""``/spend/logs/v2`` pages decoded to the allow-listed fields only, and rows to Arrow.

Fields not named in ``Row`` / ``RowMetadata`` (the key hash, price maps, request bodies in
``metadata``) are skipped by the decoder without ever being built.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa

from resources.litellm_usage import cache_token_counts
from resources.spend_logs import SPEND_LOG_SCHEMA


class RowMetadata(msgspec.Struct, gc=False):
    # Any: a value that is not a string (LiteLLM never writes one) must not fail the page.
    user_api_key_alias: Any = None
    user_api_key_team_alias: Any = None
    user_api_key_user_id: Any = None
    error_information: Any = None  # only error_class and error_code are read
    usage_object: Any = None  # only the cache token counts are read


class Row(msgspec.Struct, gc=False, rename={"start_time": "startTime", "end_time": "endTime"}):
    request_id: str
    start_time: datetime
    end_time: datetime | None = None
    litellm_call_id: str | None = None
    call_type: str | None = None
    status: str | None = None
    model: str | None = None
    model_group: str | None = None
    custom_llm_provider: str | None = None
    spend: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    request_tags: list | str | None = None
    team_id: str | None = None
    user: str | None = None
    metadata: RowMetadata | str | None = None
    cache_hit: Any = None  # the text column: 'True', 'False' or ''


class Page(msgspec.Struct, gc=False):
    data: list[Row]
    total: int | None = None
    total_is_capped: bool | None = None


# strict=False: a token count sent as 12.0, or a number as text, is still that number.
PAGE_DECODER = msgspec.json.Decoder(Page, strict=False)
_METADATA_DECODER = msgspec.json.Decoder(RowMetadata, strict=False)


def spend_log_table(rows: list[Row]) -> pa.Table:
    """Kept rows → ``SPEND_LOG_SCHEMA``, one column at a time."""
    if not rows:
        return SPEND_LOG_SCHEMA.empty_table()
    metadata = [_metadata(row.metadata) for row in rows]
    columns = {
        "request_id": [r.request_id for r in rows],
        "litellm_call_id": [r.litellm_call_id for r in rows],
        "call_type": [r.call_type for r in rows],
        "status": [r.status for r in rows],
        "start_time": [r.start_time for r in rows],  # aware or naive; Arrow reads both as UTC
        "end_time": [r.end_time for r in rows],
        "model": [r.model for r in rows],
        "model_group": [r.model_group for r in rows],
        "custom_llm_provider": [r.custom_llm_provider for r in rows],
        "spend": [r.spend for r in rows],
        "prompt_tokens": [r.prompt_tokens for r in rows],
        "completion_tokens": [r.completion_tokens for r in rows],
        "total_tokens": [r.total_tokens for r in rows],
        "request_tags": _tags_column([r.request_tags for r in rows]),
        "team_id": [r.team_id for r in rows],
        "key_alias": [_text(m.user_api_key_alias) for m in metadata],
        "team_alias": [_text(m.user_api_key_team_alias) for m in metadata],
        # as the database reader: "user", else the key's user
        "user_id": [
            r.user or _text(m.user_api_key_user_id) for r, m in zip(rows, metadata, strict=True)
        ],
        "error_class": [_error_field(m.error_information, "error_class") for m in metadata],
        "error_code": [_error_field(m.error_information, "error_code") for m in metadata],
        "cache_hit": [None if r.cache_hit is None else str(r.cache_hit) for r in rows],
    }
    cache_tokens = [cache_token_counts(m.usage_object) for m in metadata]
    columns["cache_read_tokens"] = [read for read, _ in cache_tokens]
    columns["cache_creation_tokens"] = [creation for _, creation in cache_tokens]
    arrays = [pa.array(columns[field.name], type=field.type) for field in SPEND_LOG_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SPEND_LOG_SCHEMA)


_NO_METADATA = RowMetadata()


def _metadata(value: RowMetadata | str | None) -> RowMetadata:
    """The three allow-listed values; ``metadata`` left as JSON text is decoded the same way."""
    if isinstance(value, RowMetadata):
        return value
    if isinstance(value, str):
        try:
            return _METADATA_DECODER.decode(value)
        except msgspec.DecodeError:  # LiteLLM itself reads unparsable metadata as {}
            return _NO_METADATA
    return _NO_METADATA


def _error_field(error_information: Any, name: str) -> str | None:
    """``error_information ->> name`` as the database reader takes it."""
    if not isinstance(error_information, dict):
        return None
    return _text(error_information.get(name))


def _text(value: Any) -> str | None:
    """A metadata value as PostgreSQL's ``->>`` gives it: strings as they are, else JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _tags_column(values: list[list | str | None]) -> list[str]:
    """``_tags_json`` of each value, each distinct value normalised once: tag sets repeat."""
    normalised: dict[Any, str] = {}
    column = []
    for value in values:
        key = value if not isinstance(value, list) else _hashable(value)
        if key is None or (text := normalised.get(key)) is None:
            text = _tags_json(value)
            if key is not None:
                normalised[key] = text
        column.append(text)
    return column


def _hashable(tags: list) -> tuple | None:
    return tuple(tags) if all(isinstance(tag, str) for tag in tags) else None


def _tags_json(value: list | str | None) -> str:
    """``request_tags`` (a list, or its JSON text) as the JSON text of a list of strings."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, list):
        return "[]"
    tags = [tag if isinstance(tag, str) else json.dumps(tag) for tag in value]
    return json.dumps(tags, ensure_ascii=False)  # the text PostgreSQL's jsonb gives
