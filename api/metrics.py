"""Prometheus metrics in the text exposition format (no client library needed)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append(f'{name}_bucket{{le="{bound}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {self.sum}")
        out.append(f"{name}_count {self.count}")
        return out


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.appends = 0
        self.rejected = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch = Histogram(BATCH_BUCKETS)

    def observe_batch(self, appended: list[Any]) -> None:
        with self._lock:
            self.appends += len(appended)
            self.batch.observe(len(appended))

    def observe_append(self, seconds: float, ok: bool) -> None:
        with self._lock:
            self.latency.observe(seconds)
            if not ok:
                self.rejected += 1

    def render(self, log_size: int) -> str:
        with self._lock:
            lines = [
                "# HELP encd_appends_total Events appended to the log by this process.",
                "# TYPE encd_appends_total counter",
                f"encd_appends_total {self.appends}",
                "# HELP encd_rejected_total Submitted events refused (rules, signatures, conflicts).",
                "# TYPE encd_rejected_total counter",
                f"encd_rejected_total {self.rejected}",
                "# HELP encd_append_seconds Time from submission to receipt.",
                "# TYPE encd_append_seconds histogram",
                *self.latency.lines("encd_append_seconds"),
                "# HELP encd_batch_events Events per sequencer batch (group commit).",
                "# TYPE encd_batch_events histogram",
                *self.batch.lines("encd_batch_events"),
                "# HELP encd_log_size Entries in the log.",
                "# TYPE encd_log_size gauge",
                f"encd_log_size {log_size}",
            ]
        return "\n".join(lines) + "\n"
