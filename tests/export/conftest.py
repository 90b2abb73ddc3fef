"""One tiny trained run shared by the export tests (training it takes a few seconds)."""

from __future__ import annotations

import pytest

from sladkit.config import TrainConfig

TINY = {"depth": 2, "init_values": 1.0}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    from sladkit.train import run

    out = tmp_path_factory.mktemp("export") / "run"
    run(
        TrainConfig(
            out=str(out),
            pretrained=False,
            teacher_kwargs=TINY,
            student_kwargs=TINY,
            synthetic_train=128,
            synthetic_val=64,
            epochs=2,
            batch_size=32,
            rank=4,
            targets="qkv,fc1",
            progress=False,
        )
    )
    return out
