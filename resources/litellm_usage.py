"""Prompt-cache token counts in LiteLLM's usage object, wherever a provider puts them.

LiteLLM keeps the provider's usage as ``usage_object``: in the webhook payload's and the spend
log's ``metadata``. OpenAI-style providers report cached prompt tokens as
``prompt_tokens_details.cached_tokens``; Anthropic-style ones as ``cache_read_input_tokens``
and ``cache_creation_input_tokens`` (LiteLLM copies those to the top level of the usage). The
first path with a count wins. A usage without any of them has no count: null, never zero.
The usage is a mapping (a spend log's JSON) or the typed ``Usage`` the receiver decodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

# Paths inside the usage object, first found wins.
CACHE_READ_PATHS = (("prompt_tokens_details", "cached_tokens"), ("cache_read_input_tokens",))
CACHE_CREATION_PATHS = (
    ("cache_creation_input_tokens",),
    ("prompt_tokens_details", "cache_creation_tokens"),
)
_MAX_TOKENS = 2**63 - 1


def _count(value: Any) -> int | None:
    """A token count, or None for anything that is not a non-negative whole number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if 0 <= value <= _MAX_TOKENS else None


def _first(usage: Any, paths: tuple[tuple[str, ...], ...]) -> int | None:
    for path in paths:
        value: Any = usage
        for key in path:
            if value is None:
                break
            if isinstance(value, msgspec.Struct):
                value = getattr(value, key, None)
            elif isinstance(value, Mapping):
                value = value.get(key)
            else:
                value = None
                break
        if value is not None and (count := _count(value)) is not None:
            return count
    return None


def cache_token_counts(usage: Any) -> tuple[int | None, int | None]:
    """``(cache_read_tokens, cache_creation_tokens)`` of a usage object (a mapping, a typed
    usage, or anything else, which has no counts)."""
    if not isinstance(usage, msgspec.Struct | Mapping):
        return None, None
    return _first(usage, CACHE_READ_PATHS), _first(usage, CACHE_CREATION_PATHS)


def cache_tokens_sql(usage: str, paths: tuple[tuple[str, ...], ...]) -> str:
    """The PostgreSQL expression of the same rule over a ``jsonb`` usage object ``usage``:
    the first path holding a whole, non-negative JSON number (anything else is no count,
    and never fails the read)."""
    wanted = f'@.type() == "number" && @ >= 0 && @ == @.floor() && @ <= {_MAX_TOKENS}'
    found = ", ".join(
        f"jsonb_path_query_first({usage}, '$.{'.'.join(path)} ? ({wanted})')" for path in paths
    )
    return f"coalesce({found})::numeric::int8"
