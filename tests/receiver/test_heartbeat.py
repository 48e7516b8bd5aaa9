"""A real ``spend-receiver`` keeps ``landing/_heartbeat/<writer-id>.json`` fresh while it runs
and can write, on a local folder and on object storage; stopped, or cut off from its store,
its heartbeat goes stale."""

import time
from collections.abc import Callable
from datetime import datetime, timezone

from resources.landing import Heartbeat, LandingZone
from tests.receiving import ReceiverProcess

FAST = ("--heartbeat-seconds", "0.2")


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise TimeoutError(f"not within {timeout}s: {condition.__doc__ or condition}")


def newest(root: str) -> Heartbeat | None:
    beats = LandingZone(root).heartbeats()
    return beats[0] if beats else None


def test_a_running_receiver_refreshes_its_heartbeat_and_a_stopped_one_does_not(tmp_path):
    root = str(tmp_path / "data")
    receiver = ReceiverProcess(root, *FAST, "--workers", "2").start()
    try:
        # Each worker writes as itself (<hostname>-<its pid>), so each keeps a heartbeat.
        first = wait_for(lambda: len(LandingZone(root).heartbeats()) == 2 and newest(root))
        writers = {beat.writer for beat in LandingZone(root).heartbeats()}
        assert len(writers) == 2
        assert not any(writer.endswith(f"-{receiver.process.pid}") for writer in writers)
        assert first.started_at <= first.at
        wait_for(lambda: newest(root).at > first.at)  # the heartbeat moves on
        # Graceful: the supervisor drains its workers and exits 0 (see test_workers).
        assert receiver.stop() == 0
        assert "landing writer stopped" in receiver.log_path.read_text()
    finally:
        receiver.kill()
    last = LandingZone(root).heartbeats()
    time.sleep(1.5)
    assert LandingZone(root).heartbeats() == last  # nobody refreshes them: the check sees stale
    assert sorted(p.name for p in (tmp_path / "data" / "landing" / "_heartbeat").iterdir()) == [
        f"{writer}.json" for writer in sorted(writers)
    ]


def test_a_receiver_cut_off_from_its_store_stops_beating_until_the_store_is_back(
    tmp_path, s3_server, s3_root
):
    with ReceiverProcess(s3_root, *FAST, env=s3_server.env(), log_dir=tmp_path) as receiver:
        wait_for(lambda: newest(s3_root))

        def log() -> str:
            return receiver.log_path.read_text()

        with s3_server.outage():
            wait_for(lambda: "heartbeat not written" in log())
            cut_at = datetime.now(timezone.utc)
        wait_for(lambda: "heartbeat written again" in log())
        assert newest(s3_root).at >= cut_at.replace(microsecond=0)
        assert log().count("heartbeat not written") == 1  # once per outage, not per beat
