"""What every materialisation shows in the Dagster UI: rows, money, hours, files, a preview."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

PREVIEW_ROWS = 10


def table_cost_total(table: pa.Table, column: str = "cost") -> Decimal:
    total = pc.sum(table[column]).as_py() if table.num_rows else None
    return total if total is not None else Decimal(0)


def markdown_preview(table: pa.Table, rows: int = PREVIEW_ROWS) -> str:
    head = table.slice(0, rows).to_pylist()
    if not head:
        return "_no rows_"
    names = list(head[0])
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(str(r[n]) for n in names) + " |" for r in head]
    return "\n".join(lines)


def range_metadata(hours: Sequence[datetime], files: Sequence[Path]) -> dict[str, Any]:
    """Where the run wrote: the hour range and the folder of its files."""
    meta: dict[str, Any] = {
        "hours": len(hours),
        "range_start": f"{hours[0]:%Y-%m-%dT%H:00Z}" if hours else "",
        "range_end": f"{hours[-1]:%Y-%m-%dT%H:00Z}" if hours else "",
        "files_written": len(files),
    }
    if files:
        # The asset's folder (three levels above date=/hour=/file), openable in a notebook.
        meta["path"] = dg.MetadataValue.path(str(Path(files[0]).parents[2].resolve()))
    return meta


def table_result(
    table: pa.Table,
    hours: Sequence[datetime],
    files: Sequence[Path],
    preview: pa.Table | None = None,
    **extra: Any,
) -> dg.MaterializeResult:
    """The standard result of a lake asset. Numbers cover the whole materialised range."""
    metadata = {
        "dagster/row_count": table.num_rows,
        **range_metadata(hours, files),
        "preview": dg.MetadataValue.md(markdown_preview(preview if preview is not None else table)),
        **extra,
    }
    if "cost" in table.column_names:
        metadata["cost_total"] = dg.MetadataValue.text(str(table_cost_total(table)))
    return dg.MaterializeResult(metadata=metadata)
