"""LiteLLM's own spend logs: its Postgres table or its REST API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import pyarrow as pa

from assets.schemas import RAW_SPEND_SCHEMA

NOT_CONFIGURED = (
    "no LiteLLM spend-log source configured: set LITELLM_DATABASE_URL, or LITELLM_PROXY_URL "
    "and LITELLM_MASTER_KEY; spend comes from webhook landings only"
)


@dataclass(frozen=True)
class SpendLogs:
    """Rows of ``RAW_SPEND_SCHEMA`` for ``[start, end)`` and where they came from."""

    table: pa.Table
    source: str
    note: str


class LiteLLMSpendLogsResource(dg.ConfigurableResource):
    """Reads ``LiteLLM_SpendLogs`` for a time window from the database or the proxy API."""

    database_url: str | None = None
    proxy_url: str | None = None
    master_key: str | None = None

    @property
    def source(self) -> str:
        if self.database_url:
            return "database"
        if self.proxy_url and self.master_key:
            return "api"
        return "none"

    def fetch_spend_logs(self, start: datetime, end: datetime) -> SpendLogs:
        if self.source == "none":
            return SpendLogs(RAW_SPEND_SCHEMA.empty_table(), "none", NOT_CONFIGURED)
        # Refuse rather than silently under-report spend a user expects to be read.
        raise dg.Failure(
            description=(
                f"LiteLLM {self.source} source is configured but this version reads spend from "
                "webhook landings only; unset LITELLM_DATABASE_URL / LITELLM_PROXY_URL to run "
                f"without it (window {start:%Y-%m-%dT%H}Z..{end:%Y-%m-%dT%H}Z)"
            )
        )
