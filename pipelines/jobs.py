"""Jobs: the hourly pipeline up to CBF files, and the CloudZero submission."""

import dagster as dg

LANE_TAG = "spend/lane"

hourly_spend_job = dg.define_asset_job(
    "hourly_spend_job",
    selection=dg.AssetSelection.assets("cloudzero_cbf").upstream(),
    description="Landings and spend logs → spend_events → aggregates → one CBF file per hour.",
    # deploy/dagster.yaml lets one run with this tag rewrite the lake at a time.
    tags={LANE_TAG: "lake"},
)

cloudzero_submit_job = dg.define_asset_job(
    "cloudzero_submit_job",
    selection=dg.AssetSelection.assets("cloudzero_submission"),
    description="Sends the hours' CBF files to CloudZero AnyCost Stream (replace_hourly).",
)


def partition_range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Run tags that make one run materialise a whole partition range (single-run backfill)."""
    return {
        "dagster/asset_partition_range_start": first_key,
        "dagster/asset_partition_range_end": last_key,
    }
