"""sladkit/runtime/profiler.py and host_memory.py: throughput is measured, host memory is the session's."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from sladkit.config import ProfileConfig
from sladkit.metrics import wilson_interval
from sladkit.runtime.host_memory import HostMemoryWindow
from sladkit.runtime.profiler import TABLE_NOTES, format_table, profile_model


def test_throughput_is_images_over_the_wall_time_not_batch_over_p50(fake_model, fake_clock):
    """A fake clock: each call takes 1 ms, except every tenth, 21 ms (p50 1 ms, mean 3 ms)."""
    clock = fake_clock
    calls = []

    def slow_sometimes(batch):
        calls.append(len(batch))
        clock.advance(0.021 if len(calls) % 10 == 0 else 0.001)

    model = fake_model(on_infer=slow_sometimes)
    config = ProfileConfig(batches=(4,), warmup=0, iterations=100)
    (row,) = profile_model(model, config, clock=clock)
    assert row.latency_ms["p50"] == pytest.approx(1.0) and row.latency_ms["mean"] == pytest.approx(3.0)
    assert row.wall_s == pytest.approx(0.3)
    assert row.throughput == pytest.approx(
        4 * 100 / 0.3, rel=1e-4
    )  # 1333 img/s, where batch / p50 would say 4000
    assert row.latency_per_image_ms["p50"] == pytest.approx(0.25)


def test_throughput_times_mean_latency_is_the_batch(fake_model):
    """A real clock and a backend that sleeps: one call at a time, so throughput x mean latency ~ batch.

    The wall time also holds the loop between calls, so the product is at most the batch; a loose lower bound
    keeps a busy machine from failing it."""
    model = fake_model(on_infer=lambda batch: time.sleep(0.002))
    config = ProfileConfig(batches=(1, 3), warmup=1, iterations=15)
    for row in profile_model(model, config):
        product = row.throughput * row.latency_ms["mean"] / 1e3
        assert 0.5 * row.batch < product <= row.batch * 1.001
        assert row.iterations == 15 and row.wall_s > 0


def test_duration_times_for_that_long(fake_model, fake_clock):
    clock = fake_clock
    model = fake_model(on_infer=lambda batch: clock.advance(0.01))
    (row,) = profile_model(model, ProfileConfig(batches=(2,), warmup=0, duration=0.1), clock=clock)
    assert row.iterations == 10 and row.throughput == pytest.approx(2 * 10 / 0.1, rel=1e-4)


def test_gpu_compute_time_is_its_own_column(fake_model):
    model = fake_model()
    model.backend.gpu_compute_ms = lambda: 0.5  # as the TensorRT backend reports Polygraphy's timing
    (row,) = profile_model(model, ProfileConfig(batches=(1,), warmup=0, iterations=4))
    assert row.gpu_compute_ms["p50"] == 0.5
    table = format_table([row]).splitlines()
    cells = dict(zip(re.split(r"\s{2,}", table[0]), re.split(r"\s{2,}", table[2]), strict=True))
    assert cells["gpu p50"] == "0.500"
    (plain,) = profile_model(fake_model(), ProfileConfig(batches=(1,), warmup=0, iterations=4))
    assert "n/a" in format_table([plain]).splitlines()[2]


def test_table_says_what_the_columns_measure(fake_model):
    (row,) = profile_model(fake_model(), ProfileConfig(batches=(1,), warmup=0, iterations=4))
    row.accuracy = {"metric": "acc", "value": 80.0, "images": 10, "ci95": list(wilson_interval(8, 10))}
    lines = format_table([row]).splitlines()
    header = re.split(r"\s{2,}", lines[0])
    assert header[7:13] == ["mean ms", "ms/img", "gpu p50", "img/s", "speed-up", "host MB"]
    assert lines[-len(TABLE_NOTES) :] == list(TABLE_NOTES)
    assert "images / wall time" in TABLE_NOTES[1] and "minus RSS before loading" in TABLE_NOTES[1]
    assert lines[2].endswith("acc 80.00 (49.02-94.33)")


def test_wilson_interval():
    assert wilson_interval(8, 10) == pytest.approx((49.016, 94.331), abs=1e-3)  # Newcombe 1998, table I
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(27.753, abs=1e-3)
    assert wilson_interval(10, 10)[1] == pytest.approx(100.0)
    assert wilson_interval(0, 0) == (0.0, 100.0)


def _touch(megabytes: int) -> np.ndarray:
    return np.ones(megabytes * 2**20, dtype=np.uint8)  # np.ones writes every page: resident


def test_host_memory_counts_the_window_peak_even_when_freed():
    with HostMemoryWindow() as memory:
        block = _touch(64)
        del block
    assert memory.added_mb() >= 48, memory.summary()  # the peak, though the block was freed inside
    assert "clear_refs" in memory.method or "polled" in memory.method


def test_host_memory_leaves_out_what_came_before():
    block = _touch(64)
    del block  # the process's lifetime peak is now at least 64 MB above this point
    with HostMemoryWindow() as memory:
        small = _touch(1)
    del small
    assert memory.added_mb() < 32, memory.summary()


def _fake_proc(tmp_path, rss_kb: int, hwm_kb: int):
    (tmp_path / "status").write_text(f"Name:\tpython\nVmHWM:\t{hwm_kb} kB\nVmRSS:\t{rss_kb} kB\n")


def test_host_memory_resets_the_high_water_mark(tmp_path):
    _fake_proc(tmp_path, rss_kb=100 * 1024, hwm_kb=900 * 1024)  # an earlier peak of 900 MB
    (tmp_path / "clear_refs").write_text("")
    with HostMemoryWindow(proc=tmp_path) as memory:
        assert (tmp_path / "clear_refs").read_text() == "5"
        _fake_proc(tmp_path, rss_kb=110 * 1024, hwm_kb=130 * 1024)  # the kernel's HWM after the reset
    assert memory.added_mb() == 30.0 and memory.summary()["baseline_mb"] == 100.0


def test_host_memory_polls_where_clear_refs_cannot_be_written(tmp_path):
    _fake_proc(tmp_path, rss_kb=100 * 1024, hwm_kb=900 * 1024)
    (tmp_path / "clear_refs").mkdir()  # writing it fails, as in a locked-down container
    with HostMemoryWindow(proc=tmp_path) as memory:
        _fake_proc(tmp_path, rss_kb=125 * 1024, hwm_kb=900 * 1024)
        assert memory.added_mb() == 25.0
        _fake_proc(tmp_path, rss_kb=105 * 1024, hwm_kb=900 * 1024)
    assert memory.added_mb() == 25.0 and "lower bound" in memory.method


def test_profile_rows_record_memory_around_the_load(fake_model):
    with HostMemoryWindow() as memory:
        model = fake_model()
        keep = _touch(40)  # stands for what the session allocates when loading
        rows = profile_model(model, ProfileConfig(batches=(1, 2), warmup=0, iterations=2), memory=memory)
    del keep
    assert all(r.host_mb >= 32 and r.host_memory["load_mb"] >= 32 for r in rows)
    assert rows[0].host_memory["method"] == memory.method
