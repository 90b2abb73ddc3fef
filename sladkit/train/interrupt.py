"""Safe interruption: SIGINT or SIGTERM finishes the current step, writes a checkpoint and exits 75.

The signal handler only sets a flag. The loop reads it once per optimizer step (all ranks agree on it
through the step's all-reduce, so every rank stops after the same step), rank 0 writes `checkpoints/last`
atomically with the step reached inside the epoch, and `run` raises `TrainingInterrupted`. The CLI prints
"interrupted at step N; checkpoint written; continue with --resume" and exits with
`INTERRUPTED_EXIT_CODE` (75, EX_TEMPFAIL in sysexits.h: "try again later"), which a job scheduler can
tell apart from a failure (1) or a process killed without a checkpoint (130, 137, 143).
"""

from __future__ import annotations

import contextlib
import signal
import threading

from sladkit.errors import SladkitError

INTERRUPTED_EXIT_CODE = 75
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(SladkitError):
    """Training stopped on a signal after writing a checkpoint; `--resume` continues it."""

    exit_code = INTERRUPTED_EXIT_CODE

    def __init__(self, step: int, *, quiet: bool = False) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint written; continue with --resume")
        self.step = step
        self.quiet = quiet  # another process (rank 0) reported it already


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set `requested` instead of stopping the process.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                with contextlib.suppress(ValueError, OSError):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def ignore_sigint_in_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: Ctrl-C reaches the whole process group; the main process handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
