import subprocess
import sys

from receiver.metrics import FILE_SUFFIX, ReceiverMetrics


def samples(text: str) -> dict[str, str]:
    return {
        line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if not line.startswith("#")
    }


def test_histogram_buckets_are_cumulative_with_inclusive_bounds():
    metrics = ReceiverMetrics("rx-1")
    for value in (0.005, 0.01, 0.05, 3.0):
        metrics.observe_commit(value)
    rendered = samples(metrics.render())
    bucket = 'spend_receiver_commit_seconds_bucket{{le="{}",worker="rx-1"}}'
    assert rendered[bucket.format("0.005")] == "1"
    assert rendered[bucket.format("0.01")] == "2"
    assert rendered[bucket.format("0.05")] == "3"
    assert rendered[bucket.format("2.5")] == "3"
    assert rendered[bucket.format("5")] == "4"
    assert rendered[bucket.format("+Inf")] == "4"
    assert rendered['spend_receiver_commit_seconds_sum{worker="rx-1"}'] == "3.065000"
    assert rendered['spend_receiver_commit_seconds_count{worker="rx-1"}'] == "4"


def test_render_is_prometheus_text_with_every_counter_labelled_by_worker():
    metrics = ReceiverMetrics("rx-1")
    metrics.events_accepted += 7
    metrics.events_quarantined += 2
    metrics.received_bytes += 100
    metrics.requests[200] += 3
    metrics.rejected["unauthorized"] += 1
    rendered = samples(metrics.render())
    assert rendered['spend_receiver_events_accepted_total{worker="rx-1"}'] == "7"
    assert rendered['spend_receiver_events_quarantined_total{worker="rx-1"}'] == "2"
    assert rendered['spend_receiver_requests_total{code="200",worker="rx-1"}'] == "3"
    assert 'spend_receiver_requests_total{code="503",worker="rx-1"}' not in rendered  # none yet
    assert (
        rendered['spend_receiver_requests_rejected_total{reason="unauthorized",worker="rx-1"}']
        == "1"
    )
    assert rendered['spend_receiver_received_bytes_total{worker="rx-1"}'] == "100"
    assert rendered['spend_receiver_commit_seconds_count{worker="rx-1"}'] == "0"
    assert rendered['spend_receiver_writer_up{worker="rx-1"}'] == "0"
    text = metrics.render()
    for name in ("events_accepted_total", "commit_seconds", "writer_up"):
        assert text.count(f"# TYPE spend_receiver_{name} ") == 1


def test_workers_sharing_a_folder_each_render_every_worker(tmp_path):
    first, second = ReceiverMetrics("rx-1", tmp_path), ReceiverMetrics("rx-2", tmp_path)
    first.events_accepted += 5
    second.events_accepted += 7
    second.writer_up = 1
    for metrics in (first, second):  # whichever worker a scrape reaches
        rendered = samples(metrics.render())
        assert rendered['spend_receiver_events_accepted_total{worker="rx-1"}'] == "5"
        assert rendered['spend_receiver_events_accepted_total{worker="rx-2"}'] == "7"
        assert rendered['spend_receiver_writer_up{worker="rx-2"}'] == "1"
        assert metrics.render().count("# TYPE spend_receiver_events_accepted_total") == 1
    second.close()  # a worker that stops leaves the folder
    assert 'worker="rx-2"' not in first.render()


def test_a_dead_workers_counters_are_dropped(tmp_path):
    # A worker killed with SIGKILL cannot remove its file: the next scrape does.
    code = (
        "from receiver.metrics import ReceiverMetrics; "
        f"ReceiverMetrics('rx-dead', {str(tmp_path)!r}).events_accepted += 3"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / f"rx-dead{FILE_SUFFIX}").exists()
    alive = ReceiverMetrics("rx-alive", tmp_path)
    assert 'worker="rx-dead"' not in alive.render()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"rx-alive{FILE_SUFFIX}"]


def test_each_worker_sees_every_workers_open_connections(tmp_path):
    first, second = ReceiverMetrics("rx-1", tmp_path), ReceiverMetrics("rx-2", tmp_path)
    first.open_connections, second.open_connections = 3, 1
    assert first.open_connections_per_worker() == [3, 1]
    assert second.open_connections_per_worker() == [1, 3]
    assert ReceiverMetrics("rx-solo").open_connections_per_worker() == [0]
    assert samples(first.render())['spend_receiver_open_connections{worker="rx-2"}'] == "1"
