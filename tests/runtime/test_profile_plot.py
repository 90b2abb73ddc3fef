"""sladkit/runtime/profile_plot.py: the figure is checked by what it holds (matplotlib's objects, not pixels)."""

from __future__ import annotations

import pytest

from sladkit.config import ProfileConfig
from sladkit.metrics import wilson_interval
from sladkit.runtime.profile_plot import profile_figure, write_plot
from sladkit.runtime.profiler import profile_model

pytest.importorskip("matplotlib")

MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "load_average": [3.5, 2.25, 1.0], "gpu": None, "jetson": {}}
VERSIONS = {"sladkit": "0.1.0", "python": "3.11.7", "onnxruntime": "1.99.0"}


@pytest.fixture
def rows_and_samples(fake_model, fake_clock):
    """Two artifacts at batch 1 and 4; latencies per batch 2, 4, ..., 200 ms (so percentiles are distinct)."""
    rows, samples = [], []
    for name, acc in (("a.onnx", (40, 50)), ("b.onnx", (45, 50))):
        step = iter(range(1, 10_000))
        model = fake_model(on_infer=lambda batch, s=step: fake_clock.advance(0.002 * (next(s) % 100 + 1)))
        model.artifact.path = model.artifact.model_file = model.artifact.path.with_name(name)
        measured = profile_model(
            model, ProfileConfig(batches=(1, 4), warmup=0, iterations=100), clock=fake_clock
        )
        for row in measured:
            row.accuracy = {"metric": "acc", "value": 100 * acc[0] / acc[1], "images": acc[1],
                            "ci95": list(wilson_interval(*acc))}  # fmt: skip
            samples.append(row.extra.pop("samples_ms"))
        rows += measured
    return rows, samples


def test_latency_boxes_are_per_image_with_the_tables_p99(rows_and_samples):
    rows, samples = rows_and_samples
    fig = profile_figure(rows, samples, machine=MACHINE, versions=VERSIONS)
    latency_ax, accuracy_ax = fig.axes[:2]
    assert latency_ax.get_yscale() == "linear" and latency_ax.get_ylim()[0] == 0
    assert "per image" in latency_ax.get_ylabel() and "/ batch size" in latency_ax.get_ylabel()
    assert "whiskers min-p99" in latency_ax.get_title()
    labels = [t.get_text() for t in latency_ax.get_xticklabels()]
    assert labels == ["a.onnx\nbatch 1", "a.onnx\nbatch 4", "b.onnx\nbatch 1", "b.onnx\nbatch 4"]
    whiskers = {line.get_gid(): line for line in latency_ax.get_lines() if line.get_gid()}
    for row in rows:
        upper = whiskers[f"p99 {row.artifact}\nbatch {row.batch}"]
        assert max(upper.get_ydata()) == pytest.approx(row.latency_ms["p99"] / row.batch)
    notes = [t.get_text() for t in latency_ax.texts]
    row = rows[1]  # a.onnx, batch 4: the numbers written beside its box are the table's, per image
    assert f"p99 {row.latency_ms['p99'] / 4:.3g}" in notes and f"p50 {row.latency_ms['p50'] / 4:.3g}" in notes
    medians = sorted(round(min(line.get_ydata()), 6) for line in latency_ax.get_lines()
                     if len(set(line.get_ydata())) == 1 and line.get_color() == "C1")  # fmt: skip
    assert medians == sorted(round(r.latency_ms["p50"] / r.batch, 6) for r in rows)


def test_accuracy_has_its_wilson_interval_on_a_range_that_fits(rows_and_samples):
    rows, samples = rows_and_samples
    fig = profile_figure(rows, samples, machine=MACHINE, versions=VERSIONS)
    accuracy_ax = fig.axes[1]
    assert accuracy_ax.get_ylabel() == "top-1 accuracy (%)"
    assert accuracy_ax.get_xlabel() == "p50 latency per image at batch 1 (ms)"
    assert "95 % Wilson interval" in accuracy_ax.get_title() and "50 images" in accuracy_ax.get_title()
    series = [c for c in accuracy_ax.containers]  # one errorbar per artifact, at the first batch size
    assert [c.get_label() for c in series] == ["a.onnx (fp32)", "b.onnx (fp32)"]
    for container, acc in zip(series, ((40, 50), (45, 50)), strict=True):
        point, _caps, (bars,) = container.lines
        assert point.get_ydata()[0] == pytest.approx(100 * acc[0] / acc[1])
        (segment,) = bars.get_segments()
        assert [y for _, y in segment] == pytest.approx(wilson_interval(*acc))
    low, high = accuracy_ax.get_ylim()
    assert 0 < low < wilson_interval(40, 50)[0] and wilson_interval(45, 50)[1] < high <= 100


def test_footer_names_machine_load_and_versions(rows_and_samples):
    rows, samples = rows_and_samples
    fig = profile_figure(rows, samples, machine=MACHINE, versions=VERSIONS)
    (footer,) = [t.get_text() for t in fig.texts if t.get_gid() == "footer"]
    assert "Test CPU 9000 (2 cores)" in footer and "GPU none" in footer
    assert "load average 3.50 / 2.25 / 1.00" in footer
    assert "sladkit 0.1.0" in footer and "onnxruntime 1.99.0" in footer and "100 timed iterations" in footer
    assert fig._suptitle.get_text() == "sladkit profile"


def test_without_accuracy_the_panel_says_how_to_get_it(rows_and_samples, tmp_path):
    rows, samples = rows_and_samples
    for row in rows:
        row.accuracy = None
    fig = profile_figure(rows, samples, machine=MACHINE, versions=VERSIONS)
    assert "no accuracy: pass --data" in [t.get_text() for t in fig.axes[1].texts]
    write_plot(rows, samples, tmp_path / "p.png", machine=MACHINE, versions=VERSIONS)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
