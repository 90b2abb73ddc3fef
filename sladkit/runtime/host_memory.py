"""Host memory that one artifact's session adds: its peak resident set during load and run, minus the RSS
before it was loaded (`profile`'s `host MB`).

Not the process's lifetime peak (`ru_maxrss`): that counts whatever ran before, such as an earlier
artifact, or the synthetic data for `--data`.

How, on Linux: first the garbage collector runs and glibc's `malloc_trim(0)` returns freed heap pages to the
kernel (otherwise a second artifact reuses the pages the first one freed and seems to need none); the
baseline is then `VmRSS` of `/proc/self/status` when the window opens; then writing `5` to
`/proc/self/clear_refs` resets the kernel's high-water mark `VmHWM` to the current RSS (Linux >= 4.0,
`proc(5)`), so `VmHWM` afterwards is the peak of this window alone, however short-lived (a poller would
miss a spike between two polls). Where `clear_refs` cannot be written (an older kernel, a locked-down
container), a thread polls `VmRSS` every 5 ms: a lower bound, named as such in `method`. Without `/proc`
(macOS), the growth of `ru_maxrss` over the window: also a lower bound, 0 when the window stays below an
earlier peak of the process.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
import threading
from pathlib import Path

PROC = Path("/proc/self")


def _status_kb(proc: Path, key: str) -> int | None:
    """A `kB` field of `/proc/self/status` (VmRSS, VmHWM), or None without /proc."""
    try:
        for line in (proc / "status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _ru_maxrss_kb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, kB on Linux


def release_freed_memory() -> bool:
    """Collect garbage and hand the C heap's free pages back to the kernel (glibc's `malloc_trim(0)`).

    Without this, an artifact loaded after another one reuses the pages the first one freed, and its RSS
    grows by much less than it uses. Returns whether `malloc_trim` was available (glibc).
    """
    gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return False
    return True


class HostMemoryWindow:
    """A context manager around a session's load and run; `added_mb()` is its peak RSS over the baseline.

    `added_mb()` may be called inside the window (the peak so far) and after it (the window's peak).
    """

    POLL_S = 0.005

    def __init__(self, *, proc: Path = PROC) -> None:
        self.proc = proc
        self.method = ""
        self.baseline_kb = 0
        self._peak_kb = 0
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed_peak_kb: int | None = None

    def __enter__(self) -> HostMemoryWindow:
        release_freed_memory()
        rss = _status_kb(self.proc, "VmRSS")
        if rss is None:
            self.method = "growth of ru_maxrss over the window (no /proc; a lower bound)"
            self.baseline_kb = _ru_maxrss_kb()
            return self
        self.baseline_kb = self._peak_kb = rss
        try:
            (self.proc / "clear_refs").write_text("5")
            self.method = "VmHWM after resetting it with /proc/self/clear_refs, minus VmRSS before loading"
        except OSError:
            self.method = "VmRSS polled every 5 ms, minus VmRSS before loading (a lower bound)"
            self._poller = threading.Thread(target=self._poll, name="sladkit-rss-poller", daemon=True)
            self._poller.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.POLL_S):
            self._sample()

    def _sample(self) -> None:
        rss = _status_kb(self.proc, "VmRSS")
        if rss is not None:
            self._peak_kb = max(self._peak_kb, rss)

    def _current_peak_kb(self) -> int:
        if self._closed_peak_kb is not None:
            return self._closed_peak_kb
        if self.method.startswith("VmHWM"):
            return _status_kb(self.proc, "VmHWM") or self.baseline_kb
        if self._poller is not None:
            self._sample()
            return self._peak_kb
        return _ru_maxrss_kb()

    def added_mb(self) -> float:
        """MB (2**20 bytes) the window's peak RSS lies above the RSS when it opened (never below 0)."""
        return round(max(0, self._current_peak_kb() - self.baseline_kb) / 1024, 1)

    def summary(self) -> dict:
        """What the report records: the baseline, the peak and how they were measured."""
        return {
            "baseline_mb": round(self.baseline_kb / 1024, 1),
            "added_mb": self.added_mb(),
            "method": self.method,
        }

    def __exit__(self, *exc) -> None:
        self._closed_peak_kb = self._current_peak_kb()
        if self._poller is not None:
            self._stop.set()
            self._poller.join()
