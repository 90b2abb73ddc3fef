"""Timing CPU models the way they are deployed: `measure_cpu_latency`, which `--cpu-int8-form auto`
(`sladkit.export.cpu_int8.build_cpu_int8`) uses to pick the CPU INT8 form, and `timed_turn`, one model's turn in
an interleaved timing, which `benchmarks/cpu_int8.py` shares. Sessions get `sladkit profile`'s options
(`session`), so that the speed-ups export records are the ones `profile` and an application see.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from sladkit.bundle import ACCURACY_BATCH
from sladkit.export.onnx import INPUT, OUTPUT

#: auto's timing: about this many seconds for all models and batches, but at least `MIN_REPEATS` rounds
#: (a large model then takes longer) and at most `MAX_REPEATS`. On a ViT-S/14 at 224 px (one round about 4 s
#: on 2 cores), where the two forms are level within about 10 %, two 3-round timings of the same files kept
#: different forms (the README's `--cpu-int8-form auto` paragraph).
TIMING_BUDGET_S = 10.0
#: (With `SETTLE_MS` a turn lasts at least 50 ms, so auto's three or four models at two batches fit at most about
#: 30 rounds in the budget: `MAX_REPEATS` binds only when the settling is shortened, as the tests do.)
MIN_REPEATS, MAX_REPEATS = 9, 50
#: auto's timing: each model's turn (one batch size, one round) starts with untimed runs for at least this
#: long, then times `BURST` runs. The previous model's runtime holds the cores for a while after its run
#: (ONNX Runtime's spinning intra-op threads, OpenVINO's workers): on the demo student at batch 1 each
#: runtime's first 4 runs after the other's (about 1.6 ms) took 1.1-3.8x its settled time, on a ViT-S/14 the
#: openvino form's first two runs after ONNX Runtime's FP32 (about 40 ms) 1.6x and 1.4x
#: (`benchmarks/results/cpu_int8_forms.md`, "ONNX Runtime's spinning on, settling by time").
SETTLE_MS = 50.0
BURST = 3


def session(path: str | Path, runtime: str, threads: int | None = None, *, spinning: bool = True):
    """A session of `runtime` (`bundle.CPU_INT8_RUNTIME`) on `path` with `run(outputs, feeds)`, with the options
    `sladkit profile` gives that runtime (`spinning`: ONNX Runtime's, `session_options`)."""
    if runtime == "openvino":
        from sladkit.runtime.backends.openvino import OpenVINOSession

        return OpenVINOSession(path, threads)
    import onnxruntime as ort

    from sladkit.runtime.backends.onnxruntime import session_options

    options = session_options(threads, spinning=spinning)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed_turn(
    run, timed: int = BURST, *, settle_ms: float = SETTLE_MS, clock=time.perf_counter
) -> list[float]:
    """One model's turn in an interleaved timing: `run()` untimed until `settle_ms` have passed (at least once),
    so that the previous model's runtime lets go of the cores (`SETTLE_MS`), then `timed` runs.

    Args:
        run: one inference, e.g. `lambda: session.run(...)`.
        timed: how many runs to time after the settling ones.
        settle_ms: untimed running time first, in ms of `clock` (a stand-in clock must advance per reading).
        clock: seconds, monotonic.

    Returns:
        the `timed` runs' times, ms.
    """
    start = clock()
    run()
    while (clock() - start) * 1e3 < settle_ms:
        run()
    times = []
    for _ in range(timed):
        begin = clock()
        run()
        times.append((clock() - begin) * 1e3)
    return times


def measure_cpu_latency(
    models: dict[str, str | Path],
    images: np.ndarray,
    *,
    batches: tuple[int, ...] = (1, ACCURACY_BATCH),
    budget_s: float = TIMING_BUDGET_S,
    clock=time.perf_counter,
    runtimes: dict[str, str] | None = None,
    burst: int = BURST,
    settle_ms: float = SETTLE_MS,
) -> dict:
    """Median end-to-end latency of each model at each batch size on the CPU, each with its runtime.

    Sessions take `sladkit profile`'s options (`session`: the runtime's default thread count, ONNX Runtime's
    threads spinning as they do by default), so that the speed-ups export records are the ones `profile` and
    a user's application see. Two untimed runs per model and batch, then rounds: in each, every batch size is
    run by every model in turn (`timed_turn`: untimed runs for `settle_ms`, then `burst` timed), the order of
    the models rotating from round to round, so that a change in the machine's load falls on all of them
    alike. The untimed runs are where the previous model's runtime still holds the cores: timed right after
    the other runtime's run, a demo-sized model took 2-4x its time alone, which once made OpenVINO's form look
    slower than FP32 at batch 1 and, with ONNX Runtime's spinning turned off to avoid it, faster than it is
    (`benchmarks/results/cpu_int8_forms.md`, "Timing several runtimes in one process"). The untimed round's
    times set the number of rounds: about `budget_s` in all, `MIN_REPEATS` to `MAX_REPEATS`.

    Args:
        models: name -> ONNX file (e.g. {"fp32": ..., "static": ..., "dynamic": ...}).
        images: inputs (N, C, H, W); a batch larger than N repeats them.
        runtimes: name -> its runtime (`bundle.CPU_INT8_RUNTIME`); default onnxruntime.
        burst: timed runs of a model in each turn (at least 1).

    Returns:
        {"batches", "repeats", "load_average" (1/5/15 min at the start), "cores", "median_ms": {name: {batch: ms}}}
    """
    from sladkit.runtime.profiler import load_average

    if burst < 1:
        raise ValueError(f"burst must be at least 1 timed run, not {burst}")
    load = load_average()
    runtimes = runtimes or {}
    sessions = {name: session(path, runtimes.get(name, "onnxruntime")) for name, path in models.items()}
    inputs = {b: np.ascontiguousarray(images[np.arange(b) % len(images)]) for b in batches}

    def runner(name: str, b: int):
        return lambda: sessions[name].run([OUTPUT], {INPUT: inputs[b]})

    round_ms = 0.0
    for b in batches:
        for name in sessions:
            run = runner(name, b)
            run()  # first run: allocations, kernel selection
            start = clock()
            run()
            run_ms = (clock() - start) * 1e3
            round_ms += max(settle_ms, run_ms) + burst * run_ms
    repeats = max(MIN_REPEATS, min(MAX_REPEATS, int(budget_s * 1e3 / max(round_ms, 1e-6))))
    names = list(sessions)
    samples: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for b in batches:
            for name in order:
                samples[name][b] += timed_turn(runner(name, b), burst, settle_ms=settle_ms, clock=clock)
    return {
        "batches": list(batches),
        "repeats": repeats,
        "load_average": load,
        "cores": os.cpu_count(),
        "median_ms": {
            name: {str(b): round(statistics.median(s), 4) for b, s in per_batch.items()}
            for name, per_batch in samples.items()
        },
    }
