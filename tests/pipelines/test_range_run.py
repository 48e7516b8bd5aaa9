"""A 24-hour range through every asset in one run per job, checked end to end."""

import json
import shutil
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.partitions import partition_key
from demo.payloads import SECRET_MARKERS
from pipelines.definitions import ASSETS, JOBS
from pipelines.jobs import partition_range_tags
from resources.attribution import AttributionMappingResource
from resources.cbf import cbf_hour_key, parse_cbf
from resources.cloudzero import CloudZeroResource
from resources.lake import LakeResource
from resources.landing import LandingZone, LandingZoneResource
from resources.litellm import LiteLLMSpendLogsResource
from tests.samples import LAKE_ASSETS
from tests.spend_pipeline import sample_range

HOURS = 24
TOLERANCE = Decimal("1e-9")


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("range")
    with sample_range(root, HOURS, events_per_hour=150) as sample:
        traffic, data_dir, defs, instance, tags = sample
        results = {
            name: defs.resolve_job_def(name).execute_in_process(instance=instance, tags=tags)
            for name in ("hourly_spend_job", "cloudzero_submit_job")
        }
        runs = instance.get_runs()
    yield traffic, data_dir, results, runs, root


def lake_files(data_dir: Path, asset: str) -> list[Path]:
    return sorted((data_dir / "lake" / asset).glob("date=*/hour=*/*.parquet"))


def lake_total(data_dir: Path, asset: str, column: str = "cost"):
    return sum(
        (
            v
            for f in lake_files(data_dir, asset)
            for v in pq.read_table(f, columns=[column])[column].to_pylist()
        ),
        Decimal(0) if column == "cost" else 0,
    )


def test_each_job_is_one_run_materialising_every_hour(pipeline_run):
    _, _, results, runs, _ = pipeline_run
    assert len(runs) == 2
    for name, result in results.items():
        assert result.success
        per_asset: dict[str, set[str]] = {}
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            per_asset.setdefault(mat.asset_key.to_user_string(), set()).add(mat.partition)
        expected = (
            set(LAKE_ASSETS) | {"cloudzero_cbf"}
            if name == "hourly_spend_job"
            else {"cloudzero_submission"}
        )
        assert set(per_asset) == expected
        assert all(len(parts) == HOURS for parts in per_asset.values())


def test_one_file_set_per_hour_per_asset(pipeline_run):
    _, data_dir, _, _, _ = pipeline_run
    for asset in LAKE_ASSETS:
        files = lake_files(data_dir, asset)
        assert len(files) == HOURS, asset
        assert len({f.parent for f in files}) == HOURS
    assert len(list((data_dir / "cbf").glob("date=*/hour=*/cbf.csv"))) == HOURS


def test_cost_and_requests_reconcile_from_landing_to_cbf(pipeline_run):
    traffic, data_dir, _, _, _ = pipeline_run
    # The landing files themselves, deduplicated by request key.
    landed = LandingZone(data_dir).read_hours(traffic.hours).table.to_pylist()
    unique = {r["litellm_call_id"]: Decimal(r["response_cost"]) for r in landed}
    assert len(landed) == traffic.deliveries > len(unique) == len(traffic.requests)
    landing_cost = sum(unique.values(), Decimal(0))
    assert abs(landing_cost - traffic.total_cost) == 0

    # Every stage from spend_events on carries all the money; request_errors the failed part.
    stages = [asset for asset in LAKE_ASSETS[2:] if asset != "request_errors"]
    stage_costs = {asset: lake_total(data_dir, asset) for asset in stages}
    cbf = [
        row
        for f in sorted((data_dir / "cbf").rglob("cbf.csv"))
        for row in parse_cbf(f.read_bytes(), f)
    ]
    stage_costs["cloudzero_cbf"] = sum((Decimal(r["cost/cost"]) for r in cbf), Decimal(0))
    bodies = sorted((data_dir / "cloudzero" / "dry_run").rglob("body-*.json"))
    sent = [row for b in bodies for row in json.loads(b.read_text())["data"]]
    stage_costs["dry_run_bodies"] = sum((Decimal(r["cost/cost"]) for r in sent), Decimal(0))
    for stage, cost in stage_costs.items():
        assert abs(cost - landing_cost) <= TOLERANCE, (stage, cost, landing_cost)

    requests = len(traffic.requests)
    assert sum(pq.read_table(f).num_rows for f in lake_files(data_dir, "spend_events")) == requests
    for asset in stages[1:]:
        assert lake_total(data_dir, asset, "requests") == requests
    failed = [r for r in traffic.requests if r.failed]
    assert lake_total(data_dir, "request_errors", "requests") == len(failed) > 0
    assert lake_total(data_dir, "request_errors") == sum((r.cost for r in failed), Decimal(0))
    assert (
        lake_total(data_dir, "litellm_webhook_events", "total_tokens")
        > lake_total(data_dir, "spend_events", "total_tokens")
        == traffic.total_tokens
    )


def test_duplicates_collapse_and_attribution_matches_the_answer_key(pipeline_run):
    traffic, data_dir, _, _, _ = pipeline_run
    events = [r for f in lake_files(data_dir, "spend_events") for r in pq.read_table(f).to_pylist()]
    by_key = {e["request_key"]: e for e in events}
    assert len(by_key) == len(events)
    assert sum(e["deliveries"] for e in events) == traffic.deliveries
    assert traffic.duplicates > 0 and traffic.late_events > 0
    for want in traffic.requests:
        got = by_key[want.request_key]
        assert (got["department"], got["team"], got["agent"], got["attribution_source"]) == (
            want.department,
            want.team,
            want.agent,
            want.attribution_source,
        ), want.channel
        assert got["usage_hour"] == want.hour
        assert got["failed"] == want.failed
        caching = (got["error_class"], got["cache_hit"], got["cache_read_tokens"])
        assert caching == (want.error_class, want.cache_hit, want.cache_read_tokens)
    # The sample traffic has what the model and error views need.
    assert len({r.error_class for r in traffic.requests if r.failed}) >= 3
    assert any(r.cache_hit for r in traffic.requests)
    assert any(r.cache_read_tokens for r in traffic.requests)
    assert len({(r.provider, r.model) for r in traffic.requests}) >= 5


def test_cbf_resources_carry_provider_and_model(pipeline_run):
    traffic, data_dir, _, _, _ = pipeline_run
    rows = [
        row
        for f in sorted((data_dir / "cbf").rglob("cbf.csv"))
        for row in parse_cbf(f.read_bytes(), f)
    ]
    tags = [k for k in rows[0] if k.startswith("resource/tag:")]
    assert tags == [f"resource/tag:{d}" for d in ("department", "team", "agent", "provider")] + [
        "resource/tag:model"
    ]
    for row in rows:
        values = [row[t] for t in tags]
        assert row["resource/id"] == "litellm/" + "/".join(quote(v, safe="") for v in values)
    models = {(r["resource/tag:provider"], r["resource/tag:model"]) for r in rows}
    # LiteLLM's "openai/gpt-4o" with provider openai is model gpt-4o.
    assert models == {
        (r.provider, r.model.removeprefix(f"{r.provider}/")) for r in traffic.requests
    }


def test_no_prompt_completion_key_or_token_is_written_anywhere(pipeline_run):
    *_, root = pipeline_run
    checked = 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        # Parquet pages are compressed: search the decoded values, not the bytes.
        text = (
            str(pq.read_table(path).to_pylist())
            if path.suffix == ".parquet"
            else path.read_bytes().decode("latin-1")
        )
        for marker in (*SECRET_MARKERS, "sk-live", "user_api_key_hash"):
            assert marker not in text, (marker, path)
        checked += 1
    assert checked > 24 * 8


def test_chunks_of_one_hour_write_the_same_lake_and_cbf_files(pipeline_run, tmp_path):
    # SPEND_CHUNK_ROWS=1 makes every step work hour by hour: the result must not change.
    traffic, data_dir, _, _, root = pipeline_run
    chunked = tmp_path / "data"
    shutil.copytree(data_dir / "landing", chunked / "landing")
    resources = {
        "lake": LakeResource(data_dir=str(chunked), chunk_rows=1),
        "landing": LandingZoneResource(data_dir=str(chunked)),
        "attribution": AttributionMappingResource(mapping_file=str(root / "mapping.yaml")),
        "litellm": LiteLLMSpendLogsResource(),
        "cloudzero": CloudZeroResource(data_dir=str(chunked), dry_run=True),
    }
    defs = dg.Definitions(assets=ASSETS, jobs=JOBS, resources=resources)
    last = partition_key(traffic.hours[-1])
    tags = partition_range_tags(partition_key(traffic.hours[0]), last)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("hourly_spend_job").execute_in_process(
            instance=instance, tags=tags
        )
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert result.success
    chunk_logs = [m for m in logs if "chunk 24/24" in m]
    assert len(chunk_logs) == 7  # webhook events, spend_events, the five aggregates
    for asset in LAKE_ASSETS:
        for mine, theirs in zip(
            lake_files(chunked, asset), lake_files(data_dir, asset), strict=True
        ):
            assert sorted_rows(mine) == sorted_rows(theirs), mine
    for hour in traffic.hours:
        assert (chunked / cbf_hour_key(hour)).read_bytes() == (
            data_dir / cbf_hour_key(hour)
        ).read_bytes()


def sorted_rows(path: Path) -> list[tuple]:
    return sorted(tuple(map(str, r.values())) for r in pq.read_table(path).to_pylist())
