"""Progress bars for long loops outside training (calibration, the INT8 accuracy gate).

A tqdm bar on stderr when it is a terminal; elsewhere (CI, a log file) the loop runs as it is, and the
command's own one-line-per-step log says where it is. Training has its own bar and lines (`sladkit.train.loop`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable


def progress(iterable: Iterable, *, desc: str, total: int | None = None) -> Iterable:
    if not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # the runtime-only install has no tqdm
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, file=sys.stderr)
