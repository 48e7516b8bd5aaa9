"""Shared fixtures."""

import os

import pytest

# The sample hours are in 2026; partitions start on 1 January of the current year unless
# told otherwise, and are fixed when assets.partitions is first imported.
os.environ.setdefault("SPEND_START_DATE", "2026-01-01")

from tests.postgres import PostgresServer
from tests.s3_server import S3Server
from tests.samples import captured_payloads


@pytest.fixture
def payloads() -> list[dict]:
    return captured_payloads()


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server on 127.0.0.1 for the whole session; tests create databases."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    """One real S3 API (moto's server) on 127.0.0.1 for the whole session; tests make buckets."""
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_root(s3_server, monkeypatch, request):
    """``s3://<a fresh bucket>/data`` with the standard AWS environment pointing at it."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50]
    return s3_server.create_bucket(bucket.rstrip("-")) + "/data"
