"""What the benchmarks measure besides wall time: CPU seconds and resident memory."""
from __future__ import annotations

import resource
import sys
import threading

import psutil


def _processes(children: bool) -> list[psutil.Process]:
    me = psutil.Process()
    return [me, *me.children(recursive=True)] if children else [me]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its children (a Spark JVM included).

    On a shared machine wall time depends on the neighbours; CPU time much less so.
    """
    total = 0.0
    for p in _processes(children=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def max_rss_mb() -> float:
    """This process's peak resident memory so far, from the kernel (MiB)."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class PeakRss:
    """Sample resident memory in the background while the block runs.

    ``children=True`` adds the child processes (a Spark JVM); ``start_mb`` is the RSS on entry,
    ``peak`` (bytes) / ``peak_mb`` the highest sample, one last sample taken on exit.
    """

    def __init__(self, interval: float = 0.2, children: bool = True) -> None:
        self.interval, self.children, self.peak, self.start_mb = interval, children, 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in _processes(self.children):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self.start_mb = self._sample() / 2**20
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20
