from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resources.lake import (
    LakeResource,
    chunk_hours,
    hive_prefix,
    hours_between,
    split_by_hour,
)

H0 = datetime(2026, 3, 1, 22, tzinfo=timezone.utc)
HOURS = hours_between(H0, H0 + timedelta(hours=3))


def table(hours: list[datetime]) -> pa.Table:
    return pa.table(
        {"usage_hour": pa.array(hours, pa.timestamp("us", tz="UTC")), "n": list(range(len(hours)))}
    )


def test_hours_between_crosses_midnight_and_rejects_unaligned():
    assert [f"{h:%d %H}" for h in HOURS] == ["01 22", "01 23", "02 00"]
    with pytest.raises(ValueError, match="hour-aligned"):
        hours_between(H0 + timedelta(minutes=1), H0 + timedelta(hours=2))


def test_hive_prefix_is_utc():
    local = H0.astimezone(timezone(timedelta(hours=5)))
    assert hive_prefix("lake/t", local) == "lake/t/date=2026-03-01/hour=22"


def test_split_by_hour_gives_every_hour_and_refuses_rows_outside():
    parts = split_by_hour(table([HOURS[0], HOURS[2], HOURS[0]]), HOURS, "usage_hour")
    assert {h: p.num_rows for h, p in parts.items()} == {HOURS[0]: 2, HOURS[1]: 0, HOURS[2]: 1}
    with pytest.raises(ValueError, match="outside the materialised range"):
        split_by_hour(table([H0 - timedelta(hours=1)]), HOURS, "usage_hour")


def test_write_hours_writes_one_file_per_hour_and_reads_a_range(tmp_path):
    lake = LakeResource(data_dir=str(tmp_path))
    files = [Path(f) for f in lake.write_hours("t", table([HOURS[0], HOURS[2]]), HOURS)]
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "lake/t/date=2026-03-01/hour=22/part-0.parquet",
        "lake/t/date=2026-03-01/hour=23/part-0.parquet",
        "lake/t/date=2026-03-02/hour=00/part-0.parquet",
    ]
    assert pq.read_table(files[1]).num_rows == 0  # an empty hour is still materialised
    assert lake.read_hours("t", HOURS).num_rows == 2
    assert lake.read_hours("t", HOURS[2:]).column("n").to_pylist() == [1]


def test_rewriting_an_hour_replaces_it(tmp_path):
    lake = LakeResource(data_dir=str(tmp_path))
    lake.write_hours("t", table([HOURS[0]] * 5), HOURS[:1])
    lake.write_hours("t", table([HOURS[0]]), HOURS[:1])
    assert lake.read_hours("t", HOURS[:1]).num_rows == 1
    folder = (tmp_path / lake.hour_key("t", HOURS[0])).parent
    assert [p.name for p in folder.iterdir()] == ["part-0.parquet"]


def test_missing_hour_names_the_asset_and_hour(tmp_path):
    lake = LakeResource(data_dir=str(tmp_path))
    lake.write_hours("t", table([]), HOURS[:1])
    with pytest.raises(FileNotFoundError, match=r"t has no data for 2 hour\(s\).*hour=23"):
        lake.read_hours("t", HOURS)


def test_chunk_hours_groups_consecutive_hours_within_the_budget():
    hours = hours_between(H0, H0 + timedelta(hours=6))
    assert (
        chunk_hours(hours, [3, 3, 4, 10, 0, 2], budget=10)
        == [
            hours[0:3],  # 3 + 3 + 4 = 10 fits
            hours[3:5],  # 10 + 0
            hours[5:6],
        ]
    )
    # An hour over the budget is a chunk of its own, never dropped or split.
    assert chunk_hours(hours[:3], [50, 1, 50], budget=10) == [[h] for h in hours[:3]]
    assert chunk_hours([], [], budget=10) == []
    with pytest.raises(ValueError, match="3 hours but 2 sizes"):
        chunk_hours(hours[:3], [1, 2], budget=10)
    with pytest.raises(ValueError, match="SPEND_CHUNK_ROWS"):
        chunk_hours(hours[:3], [1, 2, 3], budget=0)


def test_row_counts_chunks_and_scans_come_from_the_files(tmp_path):
    lake = LakeResource(data_dir=str(tmp_path), chunk_rows=2)
    lake.write_hours("t", table([HOURS[0], HOURS[0], HOURS[2]]), HOURS)
    assert lake.row_counts("t", HOURS) == [2, 0, 1]
    assert lake.chunks(["t"], HOURS) == [HOURS[:2], HOURS[2:]]
    assert lake.chunks(["t", "t"], HOURS) == [HOURS[:1], HOURS[1:]]
    scan = lake.scan("t", HOURS)
    assert (scan.num_rows, scan.column_names, len(scan.keys)) == (3, ["usage_hour", "n"], 3)
    assert scan.schemas == (table(HOURS[:1]).schema,)


def test_a_scan_keeps_every_distinct_schema(tmp_path):
    lake = LakeResource(data_dir=str(tmp_path))
    lake.write_hours("t", table(HOURS[:1]), HOURS[:1])
    drifted = table(HOURS[1:2]).set_column(1, "n", pa.array([1.5]))
    lake.write_hours("t", drifted, HOURS[1:2])
    scan = lake.scan("t", HOURS[:2])
    assert scan.schema == table(HOURS[:1]).schema
    assert [s.field("n").type for s in scan.schemas] == [pa.int64(), pa.float64()]
