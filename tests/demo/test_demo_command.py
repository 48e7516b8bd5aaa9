"""``python -m demo`` (what ``make demo`` runs) end to end, in a subprocess like a user."""

import dagster as dg
import pyarrow.parquet as pq

from tests.spend_pipeline import run_demo


def test_demo_lands_runs_and_summarises(tmp_path, monkeypatch):
    done = run_demo(tmp_path, str(tmp_path / "data"), hours=3, events_per_hour=40)
    out = done.stdout
    assert "hourly_spend_job: run" in out and "cloudzero_submit_job: run" in out
    assert out.count("succeeded") == 2
    for heading in ("Cost by department", "Cost by team", "Cost by agent", "Dry-run bodies"):
        assert heading in out
    data = tmp_path / "data"
    assert len(list((data / "lake" / "spend_events").glob("date=*/hour=*/part-0.parquet"))) == 3
    assert len(list((data / "cbf").glob("date=*/hour=*/cbf.csv"))) == 3
    assert list((data / "cloudzero" / "dry_run").glob("*/body-0001.json"))
    events = sum(
        pq.read_table(f).num_rows for f in (data / "lake" / "spend_events").rglob("*.parquet")
    )
    assert events > 0
    # The runs are recorded in the Dagster instance that `make dev` opens.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    assert sorted(r.job_name for r in runs) == ["cloudzero_submit_job", "hourly_spend_job"]
    assert all(r.is_success for r in runs)
