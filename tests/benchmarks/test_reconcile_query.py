"""The reconciliation query benchmark's helpers, and one tiny run of the whole script path.

Nothing here asserts a speed: the smoke run only proves the benchmark still works end to end.
"""

from datetime import timedelta

from benchmarks.reconcile_query import (
    TABLE_END,
    Plan,
    parse_args,
    run_benchmark,
    sensor_window,
    start_times,
)


def test_start_times_spread_evenly_over_the_days_before_the_tick():
    times = list(start_times(1000, 30))
    assert times[0] == TABLE_END - timedelta(days=30) and times == sorted(times)
    assert times[-1] < TABLE_END


def test_the_window_is_the_default_ticks():
    start, end = sensor_window()
    assert (end - start) == timedelta(days=7, hours=-3)  # 7 days, less the 3-hour look-back
    assert end == TABLE_END.replace(minute=0) - timedelta(hours=3)


def test_a_plan_names_its_scans_rows_and_buffers():
    explained = [
        {
            "Plan": {
                "Node Type": "Aggregate",
                "Actual Rows": 165,
                "Shared Hit Blocks": 10,
                "Shared Read Blocks": 6,
                "Plans": [
                    {
                        "Node Type": "Index Scan",
                        "Index Name": "LiteLLM_SpendLogs_startTime_idx",
                        "Relation Name": "LiteLLM_SpendLogs",
                        "Actual Rows": 4583,
                        "Actual Loops": 1,
                    }
                ],
            },
            "Execution Time": 5.1,
        }
    ]
    plan = Plan.of(explained)
    assert plan.scans == ("Index Scan using LiteLLM_SpendLogs_startTime_idx on LiteLLM_SpendLogs",)
    assert (plan.rows_scanned, plan.hours, plan.execution_ms) == (4583, 165, 5.1)
    assert plan.buffers_mib == 16 * 8 / 1024


def test_a_tiny_run_reports_an_index_bounded_plan():
    report = run_benchmark(parse_args(["--rows", "3000", "--rounds", "1"]))
    assert "Index Scan using LiteLLM_SpendLogs_startTime_idx" in report
    assert "165 hours" in report and "Machine:" in report
