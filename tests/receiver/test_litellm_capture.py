"""The capture behind ``tests/fixtures/litellm/<version>/`` against each tested LiteLLM
version's real proxy: it still runs, and what it captures today has the committed bodies'
shape (every key path, with its JSON types) and every field the pipeline reads.

A fixture that no longer matches its version fails here; ``python -m tests.litellm_capture
<version>`` writes it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.litellm_capture import capture
from tests.litellm_install import TESTED_VERSIONS, LiteLLMInstallError
from tests.receiver.test_litellm_fields import BODY_KINDS, events_of, read_path_problems
from tests.samples import LITELLM_FIXTURES

# Content, whose shape follows the prompt, the completion or LiteLLM's price map.
CONTENT_FIELDS = ("messages", "response", "model_map_information")


@dataclass(frozen=True)
class FreshCapture:
    version: str
    texts: dict[str, str]

    def events(self, name: str) -> list[dict[str, Any]]:
        return events_of(self.texts[name], ndjson=name.endswith(".ndjson"))


@pytest.fixture(scope="module", params=TESTED_VERSIONS, ids=lambda version: f"litellm-{version}")
def fresh(request, tmp_path_factory) -> FreshCapture:
    version = request.param
    try:
        return FreshCapture(version, capture(version, tmp_path_factory.mktemp("capture")))
    except LiteLLMInstallError as exc:
        reason = str(exc)
    # Never a skip: without the proxy this test has proven nothing.
    pytest.fail(f"cannot install LiteLLM {version}'s proxy: {reason}", pytrace=False)


def key_paths(node: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """Every key path below ``node`` with the JSON type found there (list items as ``[]``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            yield child, type(value).__name__
            if child not in CONTENT_FIELDS:
                yield from key_paths(value, child)
    elif isinstance(node, list):
        for item in node:
            yield from key_paths(item, f"{path}[]")


def shape(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {pair for event in events for pair in key_paths(event)}


def committed_events(version: str, name: str) -> list[dict[str, Any]]:
    text = (LITELLM_FIXTURES / version / name).read_text()
    return events_of(text, ndjson=name.endswith(".ndjson"))


def test_capture_makes_every_committed_file(fresh):
    committed = {path.name for path in (LITELLM_FIXTURES / fresh.version).iterdir()}
    assert set(fresh.texts) == committed


@pytest.mark.parametrize("name", BODY_KINDS)
def test_fresh_body_has_the_committed_shape(fresh, name):
    fresh_shape = shape(fresh.events(name))
    committed_shape = shape(committed_events(fresh.version, name))
    assert sorted(fresh_shape - committed_shape) == []  # new in the proxy's bodies
    assert sorted(committed_shape - fresh_shape) == []  # gone from them


@pytest.mark.parametrize("name", BODY_KINDS)
def test_fresh_body_carries_every_read_path(fresh, name):
    assert read_path_problems(fresh.events(name), BODY_KINDS[name]) == []


def test_fresh_bodies_carry_placeholders_not_secrets(fresh):
    texts = "".join(fresh.texts.values())
    assert "sk-capture-" not in texts and "capture-token-" not in texts
    assert "Bearer REPLACE-ME" in fresh.texts["request_headers.json"]
