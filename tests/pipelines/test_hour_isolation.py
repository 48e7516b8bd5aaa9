"""One bad hour holds back only itself: a day's range run with one corrupted hour sends the
other 23 to CloudZero, exactly, and the bad hour goes once it is fixed and re-materialised."""

from datetime import timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import assets.events
from resources.cbf import format_hour
from resources.raw_spend import UTC_TS
from tests.cbf_rows import ledger_differences
from tests.samples import HOUR0
from tests.spend_pipeline import spend_pipeline

DAY = [HOUR0 + timedelta(hours=h) for h in range(24)]
BAD = DAY[7]
LSB = Decimal("1e-15")  # a thousand units of the lake's 18th decimal: rounding, not spend


def count_one_request_twice(build):
    """A dedup regression in the BAD hour only."""

    def corrupted(*args):
        events = build(*args)
        in_bad = events.filter(pc.equal(events["usage_hour"], pa.scalar(BAD, UTC_TS)))
        return pa.concat_tables([events, in_bad.slice(0, 1)])

    return corrupted


def test_a_corrupted_hour_holds_back_itself_and_the_other_23_are_sent(tmp_path):
    with spend_pipeline(tmp_path, DAY) as pipeline:
        with pytest.MonkeyPatch.context() as patch:
            real = assets.events.build_spend_events
            patch.setattr(assets.events, "build_spend_events", count_one_request_twice(real))
            result = pipeline.run()
        assert result.success
        [rule] = [
            e for e in result.get_asset_check_evaluations() if e.check_name == "one_row_per_request"
        ]
        assert not rule.passed and rule.metadata["hours_held"].value == 1
        assert f"first {BAD:%Y-%m-%dT%H}:00Z: 2 rows share their request_key" in rule.description

        requests = pipeline.tick()  # two contiguous ranges, around the bad hour
        assert [r.tags["dagster/asset_partition_range_end"] for r in requests] == [
            f"{DAY[6]:%Y-%m-%d-%H}:00",
            f"{DAY[23]:%Y-%m-%d-%H}:00",
        ]
        for request in requests:
            assert pipeline.submit(request).success
        good = [hour for hour in DAY if hour != BAD]
        assert sorted(pipeline.fake.ledger) == [format_hour(h) for h in good]
        assert ledger_differences(pipeline.fake.ledger, pipeline.files(good)) == []
        expected = pipeline.traffic.cost_by()
        for hour in good:  # the answer key is exact; the lake keeps 18 decimals
            assert abs(pipeline.fake.hour_totals()[format_hour(hour)] - expected[(hour,)]) < LSB

        # Fixed and re-materialised, the bad hour is sent, alone.
        assert pipeline.run([BAD]).success
        [request] = pipeline.tick()
        assert request.tags["dagster/asset_partition_range_start"] == f"{BAD:%Y-%m-%d-%H}:00"
        assert pipeline.submit(request).success
        assert sorted(pipeline.fake.ledger) == [format_hour(h) for h in DAY]
        assert ledger_differences(pipeline.fake.ledger, pipeline.files()) == []
        assert abs(pipeline.fake.hour_totals()[format_hour(BAD)] - expected[(BAD,)]) < LSB
