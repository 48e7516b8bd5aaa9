"""Shared fixtures."""

import os

import pytest

# The sample hours are in 2026; partitions start on 1 January of the current year unless
# told otherwise, and are fixed when assets.partitions is first imported.
os.environ.setdefault("SPEND_START_DATE", "2026-01-01")

from tests.postgres import PostgresServer
from tests.samples import captured_payloads


@pytest.fixture
def payloads() -> list[dict]:
    return captured_payloads()


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server on 127.0.0.1 for the whole session; tests create databases."""
    with PostgresServer() as server:
        yield server
