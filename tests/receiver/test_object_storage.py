"""The receiver on object storage (moto's S3 server on 127.0.0.1): an answer of 200 means the
object holding the events exists; while the store is down the answer is 503 with Retry-After,
nothing acknowledged is lost, and the retried events land exactly once."""

from collections import Counter

import httpx

from demo.payloads import encode_batch
from demo.traffic import generate_traffic
from resources.landing import LandingZone
from tests.receiving import ReceiverProcess
from tests.samples import HOUR0


def test_a_store_outage_mid_batch_is_a_503_and_the_retry_lands_once(tmp_path, s3_server, s3_root):
    traffic = generate_traffic(HOUR0, 2, events_per_hour=30, seed=8)
    batches = [payloads for _, payloads in traffic.batches]
    assert len(batches) >= 3
    acknowledged: list[str] = []
    with ReceiverProcess(s3_root, env=s3_server.env(), log_dir=tmp_path) as receiver:

        def post(payloads) -> httpx.Response:
            body = encode_batch(payloads)
            return httpx.post(
                receiver.callback_url, content=body, headers=receiver.auth, timeout=60
            )

        first = post(batches[0])
        assert first.status_code == 200 and first.json()["accepted"] == len(batches[0])
        acknowledged += [p["litellm_call_id"] for p in batches[0]]

        with s3_server.outage():
            refused = post(batches[1])
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "5"
            assert "retry" in refused.json()["error"]
            health = httpx.get(f"{receiver.url}/healthz", timeout=5)
            assert health.status_code == 200  # the receiver itself is fine

        for payloads in batches[1:]:  # LiteLLM's retry, then the rest of the traffic
            answer = post(payloads)
            assert answer.status_code == 200, answer.text
            acknowledged += [p["litellm_call_id"] for p in payloads]
        assert (
            receiver.metrics()['spend_receiver_requests_rejected_total{reason="write_failed"}'] == 1
        )

    landed = LandingZone(s3_root).read_hours(traffic.hours).table["litellm_call_id"].to_pylist()
    assert Counter(landed) == Counter(acknowledged)  # each delivery once, none lost
    assert s3_server.objects(s3_root.removeprefix("s3://").split("/")[0])  # objects, no disk
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []
