"""Decode a LiteLLM ``generic_api`` request body into its events.

LiteLLM sends one of three ``log_format``s, all with ``Content-Type: application/json``:
``json_array`` (the default), ``ndjson`` (objects joined by newlines, no trailing one) and
``single`` (one object per request). The body alone tells them apart.

Every event is decoded on its own, so one bad event (nested past the decoder's limit,
invalid UTF-8, not JSON at all) becomes an ``InvalidEvent`` at its place and the rest of
the batch lands; only a body with no recognisable event in it is refused whole. Only the
reason of a failure is ever reported, never the offending text: bodies carry prompts and
responses.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import msgspec

from resources.landing_payload import Payload, payload_of
from resources.landing_record import InvalidEvent, json_type


class BadRequest(Exception):
    """A request refused as a whole; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body of one or more members (RFC 1952 allows concatenated members),
    refusing (413) to inflate past ``limit`` bytes in all."""
    parts: list[bytes] = []
    size, rest, member = 0, body, 0
    while rest:
        member += 1
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            where = f" (member {member})" if member > 1 else ""
            raise BadRequest(400, f"invalid gzip body{where}: {exc}") from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise BadRequest(413, f"gzip body inflates past the {limit}-byte limit")
        if not inflater.eof:
            raise BadRequest(400, "invalid gzip body: truncated")
        parts.append(part)
        rest = inflater.unused_data
    if member == 0:
        raise BadRequest(400, "invalid gzip body: empty")
    return b"".join(parts)


def _json_error(exc: ValueError) -> str:
    # JSONDecodeError's own text quotes no input, only positions.
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return f"invalid JSON: {str(exc).split(';')[0]}"  # e.g. a 5,000-digit integer


def _loads(data: bytes) -> Any:
    """``json.loads`` of any bytes, raising only ``ValueError`` with a reason.

    Bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``): in a field
    the landing keeps they are refused by its one text rule (``landable_text``), and in any
    other field they are never looked at.
    """
    try:
        return json.loads(data.decode("utf-8", "surrogateescape"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


# Decodes each event into the typed ``Payload`` of the fields the landing reads and skips the
# rest unbuilt (prompts, responses, keys, price maps: most of a LiteLLM event's bytes). Any
# JSON type is taken in a read field, so only what is not JSON to msgspec fails a body here:
# syntax, nesting past its limit, invalid UTF-8 or a lone surrogate in a read field, NaN and
# numbers out of a float's range. Such a body takes the general path below, event by event.
_EVENTS = msgspec.json.Decoder(list[Payload] | Payload)
_EVENT = msgspec.json.Decoder(Payload)
# What msgspec raises on input it cannot take: a syntax or type error, nesting past its
# recursion limit, or invalid UTF-8 in a field it builds.
_MSGSPEC_REFUSALS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


def decode_events(body: bytes) -> list[Any]:
    """The events of a body: a ``Payload`` for each JSON object, an ``InvalidEvent`` for an
    event that cannot be decoded, and any other JSON value as it is (the landing refuses it).

    Raises ``BadRequest`` (400) when the body holds no JSON object.
    """
    try:
        document = _EVENTS.decode(body)
    except _MSGSPEC_REFUSALS:
        return _decode_events_one_by_one(body)
    return document if isinstance(document, list) else [document]


def _decode_events_one_by_one(body: bytes) -> list[Any]:
    stripped = body.strip(b" \t\r\n")
    if not stripped:
        raise BadRequest(400, "empty body: expected a JSON array, object or NDJSON")
    if stripped.startswith(b"["):
        elements = split_json_array(stripped)
        if elements is None:  # not an array we can take apart: say what is wrong with it
            raise BadRequest(400, _document_error(stripped))
        return [_decode_event(element, f"event {i}") for i, element in enumerate(elements)]
    try:
        document = _decode_value(stripped)
    except ValueError as exc:
        if b"\n" in stripped:  # several lines that are not one document: NDJSON
            return _decode_ndjson(stripped, str(exc))
        raise BadRequest(400, str(exc)) from None
    if isinstance(document, Payload):
        return [document]
    raise BadRequest(400, f"body is a JSON {json_type(document)}, expected an array or object")


def _document_error(body: bytes) -> str:
    try:
        _loads(body)
    except ValueError as exc:
        return _json_error(exc) if isinstance(exc, json.JSONDecodeError) else f"invalid JSON: {exc}"
    return "invalid JSON array"


def _decode_ndjson(body: bytes, document_error: str) -> list[Any]:
    events = [
        _decode_event(line, f"NDJSON line {number}")
        for number, line in enumerate(body.split(b"\n"), start=1)
        if line.strip(b" \t\r")
    ]
    if not any(isinstance(event, Payload) for event in events):
        raise BadRequest(400, f"{document_error}, and no line of it is a JSON object")
    return events


def _decode_value(data: bytes) -> Any:
    """One JSON value, a ``Payload`` if it is an object; ``ValueError`` with a reason that
    quotes nothing of ``data``."""
    try:
        return _EVENT.decode(data)
    except _MSGSPEC_REFUSALS:
        pass  # the general decoder takes what msgspec refuses, or says why not
    try:
        value = _loads(data)
    except ValueError as exc:
        raise ValueError(_json_error(exc)) from None
    return payload_of(value) if isinstance(value, dict) else value


def _decode_event(data: bytes, where: str) -> Any:
    try:
        return _decode_value(data)
    except ValueError as exc:
        return InvalidEvent(f"{where}: {exc}")


# The tokens that matter for finding an array's elements: whole strings (whose brackets and
# commas are text), brackets, commas, and a quote that opens a string never closed.
_ARRAY_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{},]|"', re.DOTALL)


def split_json_array(body: bytes) -> list[bytes] | None:
    """The raw bytes of each top-level element of a JSON array, undecoded, so that each can
    be decoded (and refused) alone; None when ``body`` is not one whole array.

    Linear in the body and iterative: nesting depth is a counter, never a recursion.
    """
    elements: list[bytes] = []
    depth, start = 0, 1
    for token in _ARRAY_TOKEN.finditer(body):
        char = body[token.start()]
        if char == 0x22:  # '"'
            if token.end() - token.start() == 1:
                return None  # a string that never ends
        elif char in b"[{":
            depth += 1
        elif char in b"]}":
            depth -= 1
            if depth == 0:
                if char != 0x5D or body[token.end() :].strip(b" \t\r\n"):
                    return None  # closed by '}', or something follows the array
                elements.append(body[start : token.start()])
                if len(elements) == 1 and not elements[0].strip(b" \t\r\n"):
                    return []  # []
                return elements
        elif depth == 1:  # ','
            elements.append(body[start : token.start()])
            start = token.end()
    return None  # never closed
