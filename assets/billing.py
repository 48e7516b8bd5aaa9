"""CloudZero: one CBF file per hour, and the AnyCost submission of those files."""

from decimal import Decimal

import dagster as dg
import pyarrow as pa

from assets.cbf import cbf_hour_path, cbf_rows, cost_total, read_cbf_csv, write_cbf_csv
from assets.metadata import markdown_preview, range_metadata, table_cost_total
from pipelines.partitions import hourly_asset, partition_hours
from resources.cloudzero import CloudZeroResource, pack_bodies
from resources.lake import LakeResource, split_by_hour

AGGREGATES = ("spend_by_department", "spend_by_team", "spend_by_agent")


def reconcile(totals: dict[str, Decimal]) -> None:
    """Every stage must carry the same money; a mismatch never reaches CloudZero."""
    if len(set(totals.values())) > 1:
        raise dg.Failure(
            description="cost does not reconcile across stages: "
            + ", ".join(f"{name}={total}" for name, total in totals.items()),
            metadata={name: str(total) for name, total in totals.items()},
        )


@hourly_asset(
    deps=list(AGGREGATES),
    group_name="billing",
    kinds={"csv", "cloudzero"},
    description="One CloudZero Billing Format file per hour (data/cbf/date=/hour=/cbf.csv).",
)
def cloudzero_cbf(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    hours = partition_hours(context)
    aggregates = {name: lake.read_hours(name, hours) for name in AGGREGATES}
    spend_events_total = table_cost_total(lake.read_hours("spend_events", hours))
    files, all_rows = [], []
    for hour, part in sorted(
        split_by_hour(aggregates["spend_by_agent"], hours, "usage_hour").items()
    ):
        rows = cbf_rows(part)
        files.append(write_cbf_csv(rows, cbf_hour_path(lake.data_dir, hour)))
        all_rows.append(rows)
    rows = pa.concat_tables(all_rows)
    cbf_total = cost_total(rows.to_pylist())
    totals = {"spend_events": spend_events_total}
    totals |= {name: table_cost_total(table) for name, table in aggregates.items()}
    totals["cloudzero_cbf"] = cbf_total
    reconcile(totals)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows.num_rows,
            **range_metadata(hours, files),
            "cost_total": dg.MetadataValue.text(str(cbf_total)),
            "resources": len(set(rows["resource/id"].to_pylist())),
            "preview": dg.MetadataValue.md(markdown_preview(rows)),
        }
    )


@hourly_asset(
    deps=["cloudzero_cbf"],
    group_name="billing",
    kinds={"cloudzero"},
    pool="cloudzero",
    description="The hours' CBF rows sent to CloudZero AnyCost Stream with replace_hourly.",
)
def cloudzero_submission(
    context: dg.AssetExecutionContext, lake: LakeResource, cloudzero: CloudZeroResource
) -> dg.MaterializeResult:
    hours = partition_hours(context)
    by_hour = {}
    for hour in hours:
        path = cbf_hour_path(lake.data_dir, hour)
        if not path.exists():
            raise dg.Failure(
                f"no CBF file for {hour:%Y-%m-%dT%H}:00Z; materialise cloudzero_cbf first"
            )
        by_hour[hour] = read_cbf_csv(path)
    # An hour with no rows was never sent, so there is nothing in CloudZero to clear.
    bodies = pack_bodies({hour: rows for hour, rows in by_hour.items() if rows})
    report = cloudzero.submit(bodies, run_id=context.run.run_id)
    context.log.info(
        f"{report.mode}: {len(bodies)} bodies for {len(hours)} hours ({report.reason})"
    )
    return dg.MaterializeResult(metadata=report.metadata())
