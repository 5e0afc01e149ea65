"""Per-step peak memory of an in-process Dagster run: a sampler thread reads the process's resident set
size every few milliseconds, and the run's event log says when each step started and ended.

``resource.getrusage`` only knows the process's high-water mark, which after the first big step says
nothing about the later ones; the samples give each step its own maximum, and its rise over the
resident size the step started with.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left, bisect_right

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """The process's resident set size now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class RssSampler:
    """Samples RSS every ``interval`` seconds in a daemon thread while in use as a context manager."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.times: list[float] = []
        self.values: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.times.append(time.time())
            self.values.append(rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, start: float, end: float) -> tuple[int, int]:
        """(peak RSS, RSS at ``start``) between two wall-clock times, in bytes."""
        first = max(bisect_left(self.times, start) - 1, 0)
        last = max(bisect_right(self.times, end), first + 1)
        values = self.values[first:last]
        return max(values), values[0]

    @property
    def peak(self) -> int:
        return max(self.values) if self.values else rss_bytes()


def step_windows(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """Start and end (wall clock) of every step of a run, from its event log."""
    starts: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            windows[event.step_key] = (starts[event.step_key], entry.timestamp)
    return windows


def step_memory(sampler: RssSampler, windows: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Per step: peak RSS and its rise over the step's starting RSS, in MB."""
    out = {}
    for step, (start, end) in windows.items():
        peak, at_start = sampler.window(start, end)
        out[step] = {"peak_mb": round(peak / 2**20, 1), "rise_mb": round((peak - at_start) / 2**20, 1)}
    return out
