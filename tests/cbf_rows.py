"""Real-shaped CBF rows and per-hour CBF files for CloudZero tests and benchmarks."""

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from assets.schemas import AGGREGATES
from resources.cbf import (
    CbfFile,
    cbf_columns,
    cbf_hour_key,
    cbf_schema,
    format_hour,
    load_cbf_file,
    write_cbf_csv,
)
from resources.cloudzero_bodies import EMPTY_HOUR_RESOURCE_ID
from resources.storage import storage_at

# The grain of spend_by_agent, which the sample tables here have.
AGENT_DIMENSIONS = ["department", "team", "agent"]


def spend_table(rows: list[dict]) -> pa.Table:
    """A ``spend_by_agent`` table of ``rows``, the measures not given filled in."""
    schema = AGGREGATES["spend_by_agent"].schema  # spend_by_agent
    defaults = {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "requests": 1,
        "failed_requests": 0,
        "latency_p50_ms": 1.0,
        "latency_p95_ms": 2.0,
    }
    full = [{**defaults, **r} for r in rows]
    return pa.Table.from_pylist(full, schema=schema)


def row(hour: datetime, agent: str, cost: str = "0.25") -> dict[str, str]:
    values = [
        format_hour(hour),
        "Usage",
        "LiteLLM spend: 1 request",
        "LiteLLM",
        f"litellm/finance/ap/{agent}",
        "10",
        "tokens",
        cost,
        "finance",
        "ap",
        agent,
    ]
    return dict(zip(cbf_columns(AGENT_DIMENSIONS), values, strict=True))


def hour_rows(hour: datetime, n: int, prefix: str = "agent") -> list[dict[str, str]]:
    return [row(hour, f"{prefix}-{i:04d}", cost=f"0.{i + 1:03d}") for i in range(n)]


def write_cbf_files(
    data_dir: Path, hours: Mapping[datetime, Sequence[Mapping[str, str]]]
) -> dict[datetime, CbfFile]:
    """Each hour's rows written as its ``cbf.csv`` under ``data_dir``, read back."""
    storage, files = storage_at(str(data_dir)), {}
    for hour, rows in hours.items():
        table = pa.Table.from_pylist([dict(r) for r in rows], schema=cbf_schema(AGENT_DIMENSIONS))
        write_cbf_csv(table, storage, cbf_hour_key(hour))
        files[hour] = load_cbf_file(storage, cbf_hour_key(hour))
    return files


def ledger_differences(
    ledger: Mapping[str, Sequence[Mapping[str, str]]], files: Mapping[datetime, CbfFile]
) -> list[str]:
    """How what CloudZero holds (hour text → rows) differs from the CBF files, hour by hour.

    An empty file must be absent from the ledger or held as the single zero-cost row that
    clears it. Rows compare as multisets of exact values, so costs match to the last digit.
    """
    problems = []
    for hour, cbf in sorted(files.items()):
        stamp = format_hour(hour)
        held = sorted(json.dumps(dict(r), sort_keys=True) for r in ledger.get(stamp, []))
        expected = sorted(json.dumps(r, sort_keys=True) for r in cbf.rows)
        if not cbf.rows:
            held_rows = ledger.get(stamp, [])
            if held_rows and not (
                len(held_rows) == 1
                and held_rows[0]["resource/id"] == EMPTY_HOUR_RESOURCE_ID
                and Decimal(held_rows[0]["cost/cost"]) == 0
            ):
                problems.append(f"{stamp}: emptied hour still holds {len(held_rows)} rows")
        elif held != expected:
            problems.append(f"{stamp}: CloudZero holds {len(held)} rows, file has {len(expected)}")
    return problems
