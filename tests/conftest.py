"""Shared fixtures."""

import pytest

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
