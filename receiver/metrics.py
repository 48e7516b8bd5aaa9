"""The receiver's Prometheus metrics, kept in process and rendered as text at ``/metrics``.

One receiver process, one set of counters: a load balancer spreading LiteLLM's callbacks
over several receivers is scraped per process, as Prometheus expects.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

# write + fsync of a group commit: from a page-cache hit to a slow disk.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.observations += 1

    def lines(self, name: str) -> list[str]:
        out, cumulative = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            cumulative += count
            out.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.observations}')
        out.append(f"{name}_sum {self.total:.6f}")
        out.append(f"{name}_count {self.observations}")
        return out


@dataclass
class ReceiverMetrics:
    events_accepted: int = 0
    events_quarantined: int = 0
    requests: Counter[int] = field(default_factory=Counter)  # by HTTP status
    rejected: Counter[str] = field(default_factory=Counter)  # refused requests, by reason
    received_bytes: int = 0
    landed_bytes: int = 0
    commits: int = 0
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(COMMIT_BUCKETS))

    def render(self) -> str:
        prefix = "spend_receiver"
        lines = [
            f"# HELP {prefix}_events_accepted_total Events landed durably (fsync'd) and acknowledged.",
            f"# TYPE {prefix}_events_accepted_total counter",
            f"{prefix}_events_accepted_total {self.events_accepted}",
            f"# HELP {prefix}_events_quarantined_total Invalid events written to the quarantine with their reason.",
            f"# TYPE {prefix}_events_quarantined_total counter",
            f"{prefix}_events_quarantined_total {self.events_quarantined}",
            f"# HELP {prefix}_requests_rejected_total Callback requests refused whole (their events are not parsed), by reason.",
            f"# TYPE {prefix}_requests_rejected_total counter",
            *(
                f'{prefix}_requests_rejected_total{{reason="{reason}"}} {count}'
                for reason, count in sorted(self.rejected.items())
            ),
            f"# HELP {prefix}_requests_total Callback requests answered, by HTTP status.",
            f"# TYPE {prefix}_requests_total counter",
            *(
                f'{prefix}_requests_total{{code="{code}"}} {count}'
                for code, count in sorted(self.requests.items())
            ),
            f"# HELP {prefix}_received_bytes_total Request body bytes received on the callback.",
            f"# TYPE {prefix}_received_bytes_total counter",
            f"{prefix}_received_bytes_total {self.received_bytes}",
            f"# HELP {prefix}_landed_bytes_total NDJSON bytes written to the landing zone and quarantine.",
            f"# TYPE {prefix}_landed_bytes_total counter",
            f"{prefix}_landed_bytes_total {self.landed_bytes}",
            f"# HELP {prefix}_commits_total Group commits (one write + fsync for all waiting requests).",
            f"# TYPE {prefix}_commits_total counter",
            f"{prefix}_commits_total {self.commits}",
            f"# HELP {prefix}_commit_seconds Write + fsync latency of a group commit.",
            f"# TYPE {prefix}_commit_seconds histogram",
            *self.commit_seconds.lines(f"{prefix}_commit_seconds"),
        ]
        return "\n".join(lines) + "\n"
