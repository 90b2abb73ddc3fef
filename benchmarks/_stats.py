"""Confidence intervals for the benchmarks: means over seeds, paired differences, one accuracy's binomial CI.

Units are the caller's: the benchmarks pass metrics in percent (top-1 %, mIoU %), and `wilson` takes and
returns percent. All intervals are two-sided 95 %.

- `mean_ci`: mean over runs (seeds) with Student's t interval, mean ± t(0.975, n−1) · s / √n. The t quantile
  comes from scipy when it is installed, else from the table below (df 1–30) and a Cornish–Fisher expansion
  above 30 (error < 1e-3 there).
- `paired_ci`: the per-seed differences a − b over the seeds both have, and `mean_ci` of them (the paired
  t interval). Pairing removes what two methods share within a seed (the same scenes, split and
  initialisation), so it resolves smaller differences than two separate intervals do.
- `wilson`: Wilson score interval of one accuracy measured on n images (Wilson 1927): the evaluation's own
  sampling noise, one run, one validation set.
"""

from __future__ import annotations

import math
import statistics

Z_975 = 1.959963984540054  # the standard normal's 0.975 quantile

# Student t, 0.975 quantile, degrees of freedom 1..30
_T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_critical(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (two-sided 95 %)."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 1 degree of freedom, got {df}")
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:
        pass
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = Z_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: list[float]) -> dict | None:
    """n, mean, std, and the 95 % t interval (low, high, half_width) of the mean; None for no values.

    With one value the interval is unknown: low, high and half_width are None.
    """
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    n, mean = len(values), statistics.fmean(values)
    out = {"n": n, "mean": mean, "std": None, "low": None, "high": None, "half_width": None}
    if n > 1:
        std = statistics.stdev(values)
        half = t_critical(n - 1) * std / math.sqrt(n)
        out.update(std=std, low=mean - half, high=mean + half, half_width=half)
    return out


def paired_ci(a: dict, b: dict) -> dict | None:
    """Per-key differences a[k] − b[k] (keys: seeds) over the keys both have, and their `mean_ci`.

    Returns `mean_ci`'s fields plus `diffs` ({key: difference}); None when no key is shared.
    """
    keys = sorted(k for k in a if k in b and a[k] is not None and b[k] is not None)
    if not keys:
        return None
    diffs = {k: float(a[k]) - float(b[k]) for k in keys}
    return {**mean_ci(list(diffs.values())), "diffs": diffs}


def wilson(percent: float, n: int) -> dict:
    """Wilson 95 % interval of an accuracy of `percent` % measured on `n` images, in percent."""
    if n < 1:
        raise ValueError(f"a binomial interval needs at least 1 image, got {n}")
    p, z = percent / 100.0, Z_975
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return {"n": n, "low": 100.0 * low, "high": 100.0 * high, "half_width": 100.0 * (high - low) / 2}


def interval_text(entry: dict | None, digits: int = 2, sign: bool = True) -> str:
    """`mean [low, high]` of a `mean_ci`/`paired_ci` entry; "–" for none, `mean (n=1)` for one value."""
    if entry is None:
        return "–"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if entry["low"] is None:
        return f"{f.format(entry['mean'])} (n=1)"
    return f"{f.format(entry['mean'])} [{f.format(entry['low'])}, {f.format(entry['high'])}]"


def verdict(ci: dict | None, *, better: str, worse: str) -> str:
    """`better` when the whole interval is above 0, `worse` when below, else says it is not resolved."""
    if ci is None or ci["low"] is None:
        return "not resolved (fewer than 2 seeds)"
    if ci["low"] > 0:
        return better
    if ci["high"] < 0:
        return worse
    return "not resolved (the CI includes 0)"
