"""Jobs: the hourly pipeline up to CBF files, and the CloudZero submission."""

from datetime import datetime

import dagster as dg

from assets.partitions import partition_key

LANE_TAG = "spend/lane"

hourly_spend_job = dg.define_asset_job(
    "hourly_spend_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("cloudzero_submission"),
    description="Landings and spend logs → spend_events → aggregates → one CBF file per hour.",
    # deploy/dagster.yaml lets one run with this tag rewrite the lake at a time.
    tags={LANE_TAG: "lake"},
    # Steps run one after another in the run's process: each is DuckDB work that already
    # uses every core, and a process per step costs ~1.5 s of imports (a third of a busy
    # hour's run). Runs still run side by side, each in its own process.
    executor_def=dg.in_process_executor,
)

cloudzero_submit_job = dg.define_asset_job(
    "cloudzero_submit_job",
    # Without sources_answering: it is about now, not about the hours a run sends, and
    # source_freshness_sensor evaluates it every few minutes.
    selection=dg.AssetSelection.assets("cloudzero_submission").without_checks(),
    description="Sends the hours' CBF files to CloudZero AnyCost Stream (replace_hourly).",
)


def partition_range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Run tags that make one run materialise a whole partition range (single-run backfill)."""
    return {
        "dagster/asset_partition_range_start": first_key,
        "dagster/asset_partition_range_end": last_key,
    }


def range_run_request(first: datetime, last: datetime, run_key: str, **tags: str) -> dg.RunRequest:
    """A request for one run over the hours ``first``..``last``, with more ``tags``."""
    range_tags = partition_range_tags(partition_key(first), partition_key(last))
    return dg.RunRequest(run_key=run_key, tags={**range_tags, **tags})
