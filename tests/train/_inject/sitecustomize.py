"""Test-only fault injection into sladkit's worker processes, loaded through PYTHONPATH.

SLADKIT_TEST_FAIL="RANK:STEP"    that rank raises a RuntimeError before optimizer step STEP.
SLADKIT_TEST_SIGNAL="STEP:NAME"  rank 0 sends signal NAME to its parent (the launcher) before step STEP.
Only processes started by torchrun (RANK set) are touched.
"""

import os
import signal

if os.environ.get("RANK") is not None and (
    os.environ.get("SLADKIT_TEST_FAIL") or os.environ.get("SLADKIT_TEST_SIGNAL")
):
    from sladkit.train import loop

    _train_step = loop.Trainer.train_step

    def train_step(self, stage, model, optimizer, scaler, micro_batches, seed, progress):
        step = progress.global_step + 1
        if fail := os.environ.get("SLADKIT_TEST_FAIL"):
            rank, at = map(int, fail.split(":"))
            if self.dist.rank == rank and step == at:
                raise RuntimeError(f"injected failure before step {step}")
        if send := os.environ.get("SLADKIT_TEST_SIGNAL"):
            at, name = send.split(":")
            if self.dist.rank == 0 and step == int(at):
                os.kill(os.getppid(), getattr(signal, name))
        return _train_step(self, stage, model, optimizer, scaler, micro_batches, seed, progress)

    loop.Trainer.train_step = train_step
