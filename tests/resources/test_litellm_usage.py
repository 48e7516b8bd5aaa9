"""Prompt-cache token counts from LiteLLM's usage object, in Python and in PostgreSQL."""

import pytest

from resources.litellm_usage import cache_token_counts


@pytest.mark.parametrize(
    ("usage", "counts"),
    [
        ({"prompt_tokens_details": {"cached_tokens": 12}}, (12, None)),  # OpenAI
        ({"cache_read_input_tokens": 7, "cache_creation_input_tokens": 3}, (7, 3)),  # Anthropic
        ({"prompt_tokens_details": {"cached_tokens": 5}, "cache_read_input_tokens": 9}, (5, None)),
        (
            {"prompt_tokens_details": {"cached_tokens": None}, "cache_read_input_tokens": 9},
            (9, None),
        ),
        ({"prompt_tokens_details": {"cache_creation_tokens": 4}}, (None, 4)),
        ({"cache_read_input_tokens": 8.0}, (8, None)),
        ({"prompt_tokens_details": None}, (None, None)),
        ({"cache_read_input_tokens": "sk-SECRET"}, (None, None)),  # not a count: none, no error
        ({"cache_read_input_tokens": -1}, (None, None)),
        ({"cache_read_input_tokens": 2.5}, (None, None)),
        ({"cache_read_input_tokens": True}, (None, None)),
        ({}, (None, None)),
        (None, (None, None)),
        ("usage", (None, None)),
    ],
)
def test_the_first_path_with_a_count_wins_and_no_count_is_null(usage, counts):
    assert cache_token_counts(usage) == counts
