"""What every materialisation shows in the Dagster UI: rows, money, hours, files, a preview."""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from resources.cbf import format_cost

PREVIEW_ROWS = 10


def table_cost_total(table: pa.Table, column: str = "cost") -> Decimal:
    """Exact sum of a money column; a float column (a drifted schema) sums via its text."""
    total = pc.sum(table[column]).as_py() if table.num_rows else None
    if total is None:
        return Decimal(0)
    return total if isinstance(total, Decimal) else Decimal(str(total))


def _cell(value: Any) -> str:
    """A table cell: money as exact fixed-point text, never through a float."""
    text = format_cost(value) if isinstance(value, Decimal) else str(value)
    return text.replace("|", "/")


def markdown_preview(table: pa.Table, rows: int = PREVIEW_ROWS) -> str:
    head = table.slice(0, rows).to_pylist()
    if not head:
        return "_no rows_"
    names = list(head[0])
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(r[n]) for n in names) + " |" for r in head]
    return "\n".join(lines)


def range_metadata(hours: Sequence[datetime], files: Sequence[str]) -> dict[str, Any]:
    """Where the run wrote: the hour range and the folder of its files."""
    meta: dict[str, Any] = {
        "hours": len(hours),
        "range_start": f"{hours[0]:%Y-%m-%dT%H:00Z}" if hours else "",
        "range_end": f"{hours[-1]:%Y-%m-%dT%H:00Z}" if hours else "",
        "files_written": len(files),
    }
    if files:
        # The asset's folder (above date=/hour=/file), openable in a notebook.
        meta["path"] = dg.MetadataValue.path(files[0].rsplit("/", 3)[0])
    return meta


@dataclass
class RangeSummary:
    """What a step wrote over its range, added up chunk by chunk: rows, exact cost, files
    and the first rows for the preview."""

    rows: int = 0
    cost: Decimal | None = None  # None for a table without a cost column
    files: list[str] = field(default_factory=list)  # where each hour went (URLs)
    preview: pa.Table | None = None

    def add(self, table: pa.Table, files: Sequence[str], preview: pa.Table | None = None) -> None:
        self.rows += table.num_rows
        if "cost" in table.column_names:
            with decimal.localcontext(prec=100):  # exact: far wider than DECIMAL(38, 18)
                self.cost = (self.cost or Decimal(0)) + table_cost_total(table)
        self.files.extend(files)
        shown = preview if preview is not None else table
        if self.preview is None or (self.preview.num_rows == 0 and shown.num_rows):
            self.preview = shown.slice(0, PREVIEW_ROWS)

    def result(
        self,
        hours: Sequence[datetime],
        check_results: Sequence[dg.AssetCheckResult] = (),
        **extra: Any,
    ) -> dg.MaterializeResult:
        """The standard result of a lake asset. Numbers cover the whole materialised range."""
        preview = self.preview if self.preview is not None else pa.table({})
        metadata = {
            "dagster/row_count": self.rows,
            **range_metadata(hours, self.files),
            "preview": dg.MetadataValue.md(markdown_preview(preview)),
            **extra,
        }
        if self.cost is not None:
            metadata["cost_total"] = dg.MetadataValue.text(format_cost(self.cost))
        return dg.MaterializeResult(metadata=metadata, check_results=list(check_results))


def chunk_done(
    context: dg.AssetExecutionContext, number: int, total: int, hours: Sequence[datetime], rows: int
) -> None:
    """A chunk of a range is written: log the progress, and hand the chunk's freed Arrow
    buffers back so that the next chunk does not stack on them (a month then peaks like
    a day)."""
    pa.default_memory_pool().release_unused()
    if total > 1:
        context.log.info(
            f"chunk {number}/{total}: {len(hours)} hour(s) {hours[0]:%Y-%m-%dT%H}:00Z.."
            f"{hours[-1]:%Y-%m-%dT%H}:00Z, {rows} rows"
        )
