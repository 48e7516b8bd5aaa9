"""The CloudZero submission benchmark's pure helpers, and one tiny run of the whole script path.

Nothing here asserts a speed: the smoke run only proves the benchmark still works end to end
and still refuses to report a run that sent the wrong data.
"""

import math
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from assets.cbf_rows import cbf_rows
from benchmarks.cloudzero_submit import (
    MONTH_BYTE_LIMIT,
    MONTH_START,
    RESOURCE_DIMENSIONS,
    SPEND_SCHEMA,
    MonthTotals,
    Run,
    break_even_ms,
    generate_files,
    limit_verdict,
    main,
    medians,
    month_finding,
    month_hours,
    month_totals,
    parse_args,
    per_second,
    ratios,
    render_report,
    resource_triples,
    run_benchmark,
    run_problems,
    spend_table,
)


def test_720_hours_from_april_first_are_exactly_april_2026_in_utc():
    hours = month_hours(720)
    assert hours[0] == datetime(2026, 4, 1, tzinfo=timezone.utc) == MONTH_START
    assert hours[-1] == datetime(2026, 4, 30, 23, tzinfo=timezone.utc)
    assert {f"{h:%Y-%m}" for h in hours} == {"2026-04"}
    assert all(b - a == timedelta(hours=1) for a, b in zip(hours, hours[1:], strict=False))


def test_resource_triples_are_distinct_and_spread_over_departments_and_teams():
    triples = resource_triples(300)
    assert len(set(triples)) == 300
    assert len({t[0] for t in triples}) == 7 and len({t[1] for t in triples}) == 8


def test_spend_table_is_spend_by_agent_shaped_with_6_to_12_decimal_costs():
    table = spend_table(MONTH_START, resource_triples(50), random.Random(1))
    assert table.schema == SPEND_SCHEMA and table.num_rows == 50
    costs = table["cost"].to_pylist()
    assert all(Decimal(0) < c < Decimal(10) for c in costs)
    places = {-c.normalize().as_tuple().exponent for c in costs}
    assert places <= set(range(1, 13)) and max(places) > 6
    rows = cbf_rows(table, RESOURCE_DIMENSIONS)
    assert rows.num_rows == 50 and len(set(rows["resource/id"].to_pylist())) == 50
    again = spend_table(MONTH_START, resource_triples(50), random.Random(1))
    assert again.equals(table)


def test_generated_files_and_their_month_totals(tmp_path):
    files = generate_files(tmp_path, hours=3, resources=4, seed=7)
    assert sorted(files) == month_hours(3)
    assert all(len(f.rows) == 4 for f in files.values())
    (totals,) = month_totals(files).values()
    assert totals.rows == 12
    assert totals.csv_bytes == sum(Path(f.url).stat().st_size for f in files.values())
    assert totals.json_bytes > totals.csv_bytes  # JSON repeats every key on every row


def test_limit_verdicts_say_plainly_when_the_month_is_over():
    assert limit_verdict(35_000_000, MONTH_BYTE_LIMIT) == "within it (50% of the limit)"
    assert limit_verdict(82_000_000, MONTH_BYTE_LIMIT).startswith("**exceeds** it (117%")
    over = month_finding("2026-04", MonthTotals(216_000, 35_000_000, 82_000_000))
    assert over.startswith("2026-04: 216,000 rows, within it (22% of the limit)")
    assert "the rows as JSON, as sent: 82,000,000 bytes, **exceeds** it (117% of the limit)" in over
    assert over.endswith("the month **exceeds 70 MB** counted as the rows as JSON, as sent.")
    small = month_finding("2026-04", MonthTotals(120, 20_000, 45_000))
    assert small.endswith("At this scale the month stays within 70 MB.")


def run(variant: str, requests: int, seconds: float, round_number: int = 1) -> Run:
    rates = per_second(600, 6, seconds)
    return Run(variant, round_number, requests, requests * 1000, seconds, *rates, 1.0, 0.25)


def test_rates_medians_and_ratios_packed_over_baseline():
    assert per_second(600, 6, 2.0) == (300.0, 3.0)
    assert all(math.isnan(x) for x in per_second(600, 6, 0.0))
    runs = [run("packed", 1, 2.0), run("baseline", 6, 1.0), run("packed", 1, 4.0, 2)]
    runs.append(run("baseline", 6, 3.0, 2))
    packed, baseline = medians(runs, "packed"), medians(runs, "baseline")
    assert (packed["requests"], packed["seconds"], baseline["seconds"]) == (1, 3.0, 2.0)
    assert packed["rows_per_second"] == pytest.approx(225.0)  # median of 300 and 150
    ratio = ratios(packed, baseline)
    assert ratio["seconds"] == 1.5 and ratio["requests"] == pytest.approx(1 / 6)
    assert break_even_ms(packed, baseline) == pytest.approx(200.0)  # 1 s over 5 saved requests
    faster = {**packed, "seconds": 1.0}
    assert break_even_ms(faster, baseline) < 0 and math.isnan(break_even_ms(packed, packed))


def test_run_problems_catch_a_missing_hour_a_violation_and_a_non_200(tmp_path):
    files = generate_files(tmp_path, hours=2, resources=3, seed=7)
    ledger = {f"{h:%Y-%m-%dT%H}:00:00Z": f.rows for h, f in files.items()}
    assert run_problems(ledger, [], [200, 200], files) == []
    del ledger["2026-04-01T01:00:00Z"]
    problems = run_problems(ledger, ["concurrent request: 2 in flight"], [200, 429], files)
    assert any("2026-04-01T01:00:00Z: CloudZero holds 0 rows" in p for p in problems)
    assert "violation: concurrent request: 2 in flight" in problems
    assert any("1 of 2 requests not answered 200" in p for p in problems)


def test_report_gives_medians_ratios_every_run_and_the_month_finding():
    runs = [run("packed", 1, 2.0), run("baseline", 6, 1.0)]
    months = {"2026-04": MonthTotals(216_000, 35_000_000, 82_000_000)}
    setup = {"rows": 216_000, "csv_bytes": 35_000_000, "seconds": 1.0, "months": months}
    report = render_report(runs, setup, parse_args([]), {"CPU": "test"}, "cmd")
    assert "wall time **2.00**, requests **0.167**" in report
    assert "more than **200.0 ms** longer than here" in report
    assert "| packed | 1 | 1,000 | 2.00 | 300 | 3.0 |" in report
    assert "| ratio packed/baseline | 0.167 | 0.167 | 2.000 | 0.500 | 0.500 |" in report
    assert "| baseline | 1 | 6 | 6,000 | 1.00 | 600 | 6.0 | verified | 1.00 | 0.25 |" in report
    assert "- 2026-04: 216,000 rows" in report and "**exceeds 70 MB**" in report
    assert "- CPU: test" in report and report.endswith("```sh\ncmd\n```\n")


def test_the_whole_benchmark_runs_on_six_hours_of_twenty_resources(tmp_path):
    options = parse_args(["--hours", "6", "--resources", "20", "--rounds", "1"])
    report, runs = run_benchmark(options, "smoke")
    packed, baseline = runs
    assert (packed.variant, baseline.variant) == ("packed", "baseline")
    assert packed.requests == 1 and baseline.requests == 6  # 6 small hours fit one body
    assert packed.rows_per_second == pytest.approx(120 / packed.seconds)
    assert packed.hours_per_second == pytest.approx(6 / packed.seconds)
    assert packed.bytes_sent > 0 and baseline.bytes_sent > packed.bytes_sent  # 6 envelopes
    assert report.startswith("# Sending a month of hourly CBF to CloudZero AnyCost Stream")
    assert "| packed | 1 | 1 |" in report and "| baseline | 1 | 6 |" in report
    assert report.count("| verified |") == 2
    assert "| ratio packed/baseline | 0.167 |" in report
    assert "2026-04: 120 rows" in report and "the month stays within 70 MB" in report
    assert "in this process, on 127.0.0.1" in report
    assert "120 CBF rows in 6 `cbf.csv` files" in report and "## Machine" in report
    output = tmp_path / "report.md"
    assert main(["--hours", "2", "--resources", "3", "--rounds", "1", "--output", str(output)]) == 0
    assert output.read_text().startswith("# Sending a month")
