from receiver.metrics import Histogram, ReceiverMetrics


def test_histogram_buckets_are_cumulative_with_inclusive_bounds():
    histogram = Histogram((0.01, 0.1))
    for value in (0.005, 0.01, 0.05, 3.0):
        histogram.observe(value)
    assert histogram.lines("x") == [
        'x_bucket{le="0.01"} 2',
        'x_bucket{le="0.1"} 3',
        'x_bucket{le="+Inf"} 4',
        "x_sum 3.065000",
        "x_count 4",
    ]


def test_render_is_prometheus_text_with_every_counter():
    metrics = ReceiverMetrics(events_accepted=7, events_quarantined=2, received_bytes=100)
    metrics.requests[200] += 3
    metrics.rejected["unauthorized"] += 1
    samples = {
        line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
        for line in metrics.render().splitlines()
        if not line.startswith("#")
    }
    assert samples["spend_receiver_events_accepted_total"] == "7"
    assert samples["spend_receiver_events_quarantined_total"] == "2"
    assert samples['spend_receiver_requests_total{code="200"}'] == "3"
    assert samples['spend_receiver_requests_rejected_total{reason="unauthorized"}'] == "1"
    assert samples["spend_receiver_received_bytes_total"] == "100"
    assert samples["spend_receiver_commit_seconds_count"] == "0"
    for name in ("events_accepted_total", "commit_seconds"):
        assert f"# TYPE spend_receiver_{name} " in metrics.render()
