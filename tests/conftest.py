"""Shared fixtures."""

import pytest

from tests.samples import captured_payloads


@pytest.fixture
def payloads() -> list[dict]:
    return captured_payloads()
