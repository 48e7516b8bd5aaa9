"""A real ``spend-receiver`` process on 127.0.0.1 for tests and benchmarks."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

SPEND_RECEIVER = Path(sys.executable).parent / "spend-receiver"
TOKENS = ("rx-token-current-5f1c", "rx-token-next-9a2e")  # two, as during a rotation


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """An HTTP server command on a free loopback port, healthy once ``GET /healthz`` is 200;
    its output kept in ``log_path``. It runs in a process group of its own, so that a kill
    reaches every process it started (the workers of a multi-process server)."""

    name = "server"

    def __init__(self, command: list[str], port: int, log_path: Path, **popen: object) -> None:
        self.command, self.port, self.log_path, self.popen = command, port, log_path, popen
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.popen,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200 and self.ready():
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"{self.name} not healthy within {timeout}s")

    def ready(self) -> bool:
        """Whether the whole server serves, once one of its processes answers."""
        return True

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful) and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL to every process of the server at once: the crash a receiver must survive
        without losing acknowledged events."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing of it is left
        self.process.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class ReceiverProcess(ServerProcess):
    """``spend-receiver`` on a free loopback port, its log next to ``data_dir``; it counts as
    started once every one of its workers (``--workers``, default one per core) runs."""

    name = "spend-receiver"

    def __init__(
        self,
        data_dir: Path | str,
        *args: str,
        tokens: tuple[str, ...] = TOKENS,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        """``data_dir`` is the storage root: a folder (the log goes beside it) or an
        object-storage URL (then ``log_dir`` says where the log goes)."""
        self.root = str(data_dir)
        self.data_dir = Path(data_dir) if "://" not in self.root else None
        port = free_port()
        command = [str(SPEND_RECEIVER), "--port", str(port), "--data-dir", self.root]
        environ = {**os.environ, **(env or {}), "SPEND_WEBHOOK_TOKENS": ",".join(tokens)}
        log_path = (log_dir or self.data_dir.parent) / f"receiver-{port}.log"
        super().__init__([*command, *args], port, log_path, env=environ)
        self.callback_url = f"{self.url}/litellm/callback"
        self.workers = int(args[args.index("--workers") + 1]) if "--workers" in args else None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[0]}"}

    def ready(self) -> bool:
        expected = self.workers or os.cpu_count() or 1
        return len(self.worker_ids()) == expected

    def metric_samples(self) -> dict[str, float]:
        """Every sample of one scrape of ``/metrics`` by its full name (labels included)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def metrics(self) -> dict[str, float]:
        """The receiver's samples summed over its workers, by name and labels other than
        ``worker`` (``spend_receiver_commits_total``, ``..._total{code="200"}``)."""
        totals: dict[str, float] = {}
        for name, value in self.metric_samples().items():
            name = _WORKER_LABEL.sub("", name).replace("{}", "")
            totals[name] = totals.get(name, 0.0) + value
        return totals

    def worker_ids(self) -> set[str]:
        """The writer ids of the workers whose landing writer runs."""
        return {
            _WORKER_ID.search(name).group(1)
            for name, value in self.metric_samples().items()
            if name.startswith("spend_receiver_writer_up{") and value == 1
        }


_WORKER_LABEL = re.compile(r',?worker="[^"]*"')
_WORKER_ID = re.compile(r'worker="([^"]*)"')
