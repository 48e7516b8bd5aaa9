import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.ingest import webhook_events_table
from resources.landing import LandingZone, parse_landing_lines
from resources.landing_record import (
    LANDING_SCHEMA,
    LandingBatch,
    event_hour,
    landable_text,
    landing_record,
    project_batch,
)
from tests.hostile import any_text
from tests.samples import captured_payloads

NOW = 1795350000.0


def hour_of(payload) -> datetime:
    return event_hour(landing_record(payload, NOW))


@given(texts=st.lists(any_text, min_size=1, max_size=40))
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
def test_text_the_landing_accepts_is_read_back_unchanged(tmp_path_factory, texts):
    """The one text rule: what ``landing_record`` takes, the landing's readers return."""
    template = captured_payloads()[0]
    events = [
        template | {"id": f"t-{n}", "model": t, "request_tags": [t]} for n, t in enumerate(texts)
    ]
    batch = project_batch(events, NOW)
    refused = {r["id"] for r in batch.rejects}
    assert refused == {e["id"] for e, t in zip(events, texts, strict=True) if not landable_text(t)}
    zone = LandingZone(tmp_path_factory.mktemp("text"), "r1")
    zone.write_batch(batch)
    expected = {e["id"]: t for e, t in zip(events, texts, strict=True) if e["id"] not in refused}
    hours = list(batch.by_hour)
    for read in (zone.read_hours(hours).table, webhook_events_table(zone.scan_hours(hours))):
        rows = read.select(["request_id", "model", "request_tags"]).to_pylist()
        assert {r["request_id"]: r["model"] for r in rows} == expected
        assert all(r["request_tags"] == [r["model"]] for r in rows)


def test_batch_lands_valid_events_by_event_hour_and_quarantines_the_rest(tmp_path, payloads):
    zone = LandingZone(tmp_path, "r1")
    late = payloads[1] | {"startTime": payloads[1]["startTime"] - 7200, "endTime": None}
    result = zone.write_events([payloads[0], {"id": "x"}, "not an object", late], received_at=NOW)
    assert (result.landed, result.quarantined) == (2, 2)
    assert [len(e) for e in zone.hour_entries([hour_of(payloads[0]), hour_of(late)])] == [1, 1]
    quarantine = list((tmp_path / "landing" / "_quarantine").rglob("*.ndjson"))
    reasons = [json.loads(line)["reason"] for line in quarantine[0].read_text().splitlines()]
    assert reasons == ["missing startTime", "event is a JSON string, not an object"]


def test_reader_tolerates_a_torn_last_line_and_reports_bad_lines(tmp_path, payloads):
    zone = LandingZone(tmp_path, "r1")
    result = zone.write_events(payloads[:3], received_at=NOW)
    path = Path(result.files[0])
    with open(path, "ab") as f:
        f.write(b'{"request_id": "torn", "start_')
    read = zone.read_hours([hour_of(payloads[0])])
    assert read.table.num_rows == 3
    assert read.torn_bytes == len(b'{"request_id": "torn", "start_')

    good = path.read_bytes().split(b"\n")[0]
    table, bad = parse_landing_lines(good + b"\nnot json\n" + good + b"\n", "f.ndjson")
    assert table.num_rows == 2
    assert [(b["file"], b["line"]) for b in bad] == [("f.ndjson", 2)]


def test_file_names_are_unique_and_sortable(tmp_path):
    zone = LandingZone(tmp_path, "r1")
    names = [zone._next_name() for _ in range(1000)]
    assert names == sorted(set(names))
    with pytest.raises(ValueError, match="writer id"):
        LandingZone(tmp_path, "../evil")


def test_read_of_an_hour_without_files_is_empty(tmp_path):
    read = LandingZone(tmp_path).read_hours([datetime(2026, 1, 1, tzinfo=timezone.utc)])
    assert (read.table.num_rows, read.files) == (0, [])
    assert read.table.schema == LANDING_SCHEMA


def test_merged_batches_write_one_file_per_hour(tmp_path, payloads):
    late = payloads[1] | {"startTime": payloads[1]["startTime"] - 7200}
    first = project_batch([payloads[0], late], NOW)
    second = project_batch([payloads[2], {"id": "no start"}], NOW + 1)
    merged = LandingBatch.merge([first, second])
    assert (merged.landed, merged.quarantined, merged.received_at) == (3, 1, NOW + 1)
    result = LandingZone(tmp_path).write_batch(merged)
    assert len(result.files) == 3  # two event hours and one quarantine file
    assert result.bytes == sum(Path(f).stat().st_size for f in result.files)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    return (
        str(tmp_path / "data") if request.param == "local" else request.getfixturevalue("s3_root")
    )


def test_each_writer_replaces_its_own_heartbeat_and_the_newest_comes_first(root):
    started = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    a, b = LandingZone(root, "rx-a"), LandingZone(root, "rx-b")
    assert a.heartbeats() == []
    a.write_heartbeat(started, started.replace(minute=1))
    b.write_heartbeat(started, started.replace(minute=2))
    a.write_heartbeat(started, started.replace(minute=3))
    beats = LandingZone(root).heartbeats()
    assert [(h.writer, h.at.minute, h.started_at) for h in beats] == [
        ("rx-a", 3, started),
        ("rx-b", 2, started),
    ]
    keys = [e.key for e in a.storage.list("landing")]
    assert keys == ["landing/_heartbeat/rx-a.json", "landing/_heartbeat/rx-b.json"]
    assert json.loads(a.storage.read(keys[0])) == {
        "writer": "rx-a",
        "at": "2026-03-01T09:03:00Z",
        "started_at": "2026-03-01T09:00:00Z",
    }


def test_an_unreadable_heartbeat_is_skipped(tmp_path):
    zone = LandingZone(tmp_path, "rx-a")
    zone.write_heartbeat(datetime(2026, 3, 1, tzinfo=timezone.utc))
    zone.storage.write("landing/_heartbeat/broken.json", b"{not json")
    assert [h.writer for h in zone.heartbeats()] == ["rx-a"]
