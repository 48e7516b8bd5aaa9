"""``make demo``: 24 hours of sample LiteLLM traffic through the whole pipeline.

Lands seeded sample webhook traffic for the 24 hours ending at the last full UTC hour,
materialises those hours as one single-run backfill of ``hourly_spend_job``, submits
them with ``cloudzero_submit_job`` (a dry run unless CloudZero credentials are set), and
prints where everything is.
"""

import argparse
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEFAULT_HOURS = 24


def demo_window(now: datetime, hours: int) -> tuple[datetime, datetime]:
    """``hours`` whole UTC hours ending with the last full hour before ``now``: [first, end)."""
    end = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=hours), end


def prepare_environment(root: str, first_hour: datetime) -> Path:
    """Embedded defaults, set before the code location is imported (it reads them once)."""
    os.environ.setdefault("SPEND_DATA_DIR", root)
    os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    # The partitions must cover the window even in the first hours of a new year.
    start = os.getenv("SPEND_START_DATE")
    if (
        start is None
        or datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=timezone.utc) > first_hour
    ):
        os.environ["SPEND_START_DATE"] = f"{first_hour:%Y-%m-%d}"
    from demo.population import MAPPING_YAML

    # A local file next to the instance: the storage root may be a bucket.
    mapping = Path(os.environ["DAGSTER_HOME"]) / "sample_attribution.yaml"
    if "SPEND_ATTRIBUTION_FILE" not in os.environ:
        mapping.parent.mkdir(parents=True, exist_ok=True)
        mapping.write_text(MAPPING_YAML)
        os.environ["SPEND_ATTRIBUTION_FILE"] = str(mapping)
    return Path(os.environ["SPEND_ATTRIBUTION_FILE"])


def land_sample_traffic(root: str, first: datetime, hours: int, per_hour: int, seed: int):
    """Replace earlier sample landings of these hours, then land fresh ones."""
    from demo.traffic import generate_traffic, land_traffic
    from resources.landing import LandingZone

    zone = LandingZone(root)
    window = [first + timedelta(hours=i) for i in range(hours)]
    for entries in zone.hour_entries(window):
        for old in entries:
            if old.key.rsplit("/", 1)[-1].startswith("sample-"):
                zone.storage.delete(old.key)
    traffic = generate_traffic(first, hours, events_per_hour=per_hour, seed=seed)
    land_traffic(traffic, root, writer_id="sample")
    return traffic


def run_range(first: datetime, last: datetime) -> None:
    """One run of each job over the whole range, on Dagster's local instance."""
    import dagster as dg

    from assets.partitions import partition_key
    from pipelines.definitions import defs
    from pipelines.jobs import partition_range_tags

    instance = dg.DagsterInstance.get()
    tags = partition_range_tags(partition_key(first), partition_key(last))
    # Step starts, ends and our warnings; per-partition events stay in the UI.
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    for job_name in ("hourly_spend_job", "cloudzero_submit_job"):
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(instance=instance, tags=tags, run_config=quiet)
        print(f"{job_name}: run {result.run_id} {'succeeded' if result.success else 'FAILED'}")


def print_summary(root: str, first: datetime, end: datetime) -> None:
    from resources.duck import connection
    from resources.lake import LakeResource, hours_between

    lake = LakeResource(data_dir=root)
    hours = hours_between(first, end)
    with connection() as con:
        for asset, keys in (
            ("spend_by_department", "department"),
            ("spend_by_team", "department, team"),
            ("spend_by_agent", "department, team, agent"),
            ("spend_by_model", "provider, model"),
        ):
            print(
                f"\nCost by {keys.split(', ')[-1]} ({first:%Y-%m-%d %H:00} .. {end:%Y-%m-%d %H:00} UTC)"
            )
            lake.scan(asset, hours).create_view(con, asset)
            rows = con.execute(
                f"""
                SELECT {keys}, sum(cost) AS cost, sum(requests) AS requests
                FROM {asset} GROUP BY ALL ORDER BY cost DESC
                """
            ).fetchall()
            labels = [" / ".join(names) for *names, _, _ in rows]
            width = max(map(len, labels), default=0)
            for label, (*_, cost, requests) in zip(labels, rows, strict=True):
                print(f"  {label:<{width}}  ${cost:>12.6f}  {requests:>7} requests")
    storage = lake.storage
    print(
        f"""
Parquet lake:      {storage.url("lake")}/<asset>/date=YYYY-MM-DD/hour=HH/part-0.parquet
CBF files:         {storage.url("cbf")}/date=YYYY-MM-DD/hour=HH/cbf.csv
Dry-run bodies:    {storage.url("cloudzero/dry_run")}/<run id>/
Query in DuckDB:   {query_hint(storage.url("lake/spend_events"), storage.local)}
Open the UI:       make dev   (DAGSTER_HOME={os.environ["DAGSTER_HOME"]}; http://127.0.0.1:3000)"""
    )


def query_hint(table: str, local: bool) -> str:
    if local:
        return f"SELECT * FROM read_parquet('{table}/*/*/*.parquet', hive_partitioning = true)"
    return f"duckdb.sql(\"SELECT * FROM ds\") with ds = pyarrow.dataset.dataset('{table}', partitioning='hive')"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=DEFAULT_HOURS)
    parser.add_argument("--events-per-hour", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    root = os.getenv("SPEND_DATA_DIR", "./data")
    first, end = demo_window(datetime.now(timezone.utc), args.hours)
    mapping = prepare_environment(root, first)
    traffic = land_sample_traffic(root, first, args.hours, args.events_per_hour, args.seed)
    print(
        f"Landed {traffic.deliveries} sample webhook deliveries ({len(traffic.requests)} requests, "
        f"{traffic.duplicates} duplicates) for {first:%Y-%m-%d %H:00} .. {end:%Y-%m-%d %H:00} UTC; "
        f"attribution mapping {mapping}"
    )
    run_range(first, end - timedelta(hours=1))
    print_summary(root, first, end)
    return 0


if __name__ == "__main__":
    sys.exit(main())
