"""Decode a LiteLLM ``generic_api`` request body into its events.

LiteLLM sends one of three ``log_format``s, all with ``Content-Type: application/json``:
``json_array`` (the default), ``ndjson`` (objects joined by newlines, no trailing one) and
``single`` (one object per request). The body alone tells them apart. Only the reason of
a failure is ever reported, never the offending text: bodies carry prompts and responses.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import msgspec

from resources.landing import PAYLOAD_FIELDS, InvalidEvent


class BadRequest(Exception):
    """A request refused as a whole; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing (413) to inflate past ``limit`` bytes."""
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(400, f"invalid gzip body: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise BadRequest(413, f"gzip body inflates past the {limit}-byte limit")
    if not inflater.eof:
        raise BadRequest(400, "invalid gzip body: truncated")
    return data


def _json_error(exc: ValueError) -> str:
    # JSONDecodeError's own text quotes no input, only positions.
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return f"invalid JSON: {str(exc).split(';')[0]}"  # e.g. a 5,000-digit integer


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


# Decodes only PAYLOAD_FIELDS of each event and skips the rest unbuilt, which makes a
# LiteLLM body about three times faster to decode than with ``json.loads``. It accepts
# strictly less than ``json.loads`` (no NaN, no lone surrogates, no out-of-range floats,
# no non-object events), and anything it refuses takes the general path below.
_Fields = msgspec.defstruct(
    "Fields", [(name, Any, msgspec.UNSET) for name in PAYLOAD_FIELDS], gc=False
)
_EVENTS = msgspec.json.Decoder(list[_Fields] | _Fields)


def _as_dict(fields: Any) -> dict[str, Any]:
    """The event's fields that were present, as ``json.loads`` would have given them."""
    return {
        name: value
        for name in PAYLOAD_FIELDS
        if (value := getattr(fields, name)) is not msgspec.UNSET
    }


def decode_events(body: bytes) -> list[Any]:
    """The events of a body; an unparseable NDJSON line becomes an ``InvalidEvent``.

    Raises ``BadRequest`` (400) when the body holds no JSON object.
    """
    try:
        document = _EVENTS.decode(body)
    except msgspec.DecodeError:
        return decode_events_stdlib(body)
    return [_as_dict(f) for f in document] if isinstance(document, list) else [_as_dict(document)]


def decode_events_stdlib(body: bytes) -> list[Any]:
    """Every body ``json.loads`` can read, and the reason for the rest."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"body is not UTF-8 (byte {exc.start})") from None
    stripped = text.strip()
    if not stripped:
        raise BadRequest(400, "empty body: expected a JSON array, object or NDJSON")
    try:
        document = _loads(stripped)
    except ValueError as exc:
        # Several lines that are not one document: NDJSON, whose bad lines are only events.
        if "\n" in stripped:
            return _decode_ndjson(stripped, _json_error(exc))
        raise BadRequest(400, _json_error(exc)) from None
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        return [document]
    raise BadRequest(400, f"body is a JSON {type(document).__name__}, expected an array or object")


def _decode_ndjson(text: str, document_error: str) -> list[Any]:
    events: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(_decode_line(line))
        except ValueError as exc:
            events.append(InvalidEvent(f"NDJSON line {number}: {_json_error(exc)}"))
    if not any(isinstance(event, dict) for event in events):
        raise BadRequest(400, f"{document_error}, and no line of it is a JSON object")
    return events


_EVENT = msgspec.json.Decoder(_Fields)


def _decode_line(line: str) -> Any:
    try:
        return _as_dict(_EVENT.decode(line))
    except msgspec.DecodeError:
        return _loads(line)
