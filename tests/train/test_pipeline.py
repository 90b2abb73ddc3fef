"""`sladkit.train.run`: every method end to end, the run-folder contract, PEFT adapters, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sladkit.train import run
from sladkit.train.methods import METHODS


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_and_writes_the_run_folder(tiny_config, method):
    config = tiny_config(method=method, epochs=1, teacher_epochs=1)
    result = run(config)
    out = Path(config.out)
    for name in (
        "config.json",
        "labels.txt",
        "metrics.jsonl",
        "checkpoints/last/model.safetensors",
        "checkpoints/last/optimizer.pt",
        "checkpoints/last/state.json",
        "checkpoints/best/state.json",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "config.json").read_text())
    assert saved["method"]["name"] == method
    assert saved["labels"] == (out / "labels.txt").read_text().splitlines()
    assert saved["transforms"]["image_size"] == saved["image_size"] == 32
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    stages = len(METHODS[method].stages)
    assert len(records) == 1 + stages  # before training, then one per epoch and stage
    assert records[0]["epoch"] == 0 and 0.0 <= records[0]["cka"] <= 1.0
    assert {"loss", "lr", "images_per_s", "elapsed_s", "student_acc", "teacher_acc", "cka"} <= set(
        records[-1]
    )
    assert result.student is not None and 0.0 <= result.student <= 100.0
    assert (result.teacher is None) == (method == "student-only")
    assert set(result.stage_seconds) == {s.name for s in METHODS[method].stages}
    has_teacher_lora = METHODS[method].teacher_adapter
    assert (out / "adapters/teacher/adapter_model.safetensors").exists() == has_teacher_lora
    assert (out / "adapters/student/adapter_model.safetensors").exists()


def test_slad_student_checkpoint_holds_no_adapter_of_its_own(tiny_config):
    config = tiny_config(epochs=1)
    run(config)
    state = load_file(Path(config.out) / "checkpoints/last/model.safetensors")
    assert any(k.startswith("teacher.backbone.") and "lora_A" in k for k in state)
    assert not any(k.startswith("student.") and "lora_" in k for k in state)  # views of the teacher's


def test_segmentation_trains_and_reports_miou(tiny_config):
    result = run(tiny_config(task="seg", epochs=1))
    assert result.metric == "miou" and 0.0 <= result.student <= 100.0
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["labels"][0] == "background" and saved["num_classes"] >= 5


def test_hflip_reaches_the_saved_train_transform(tiny_config):
    result = run(tiny_config(epochs=1, hflip=0.0, crop_scale=0.8))
    saved = json.loads((result.run_dir / "config.json").read_text())["transforms"]["train"]
    assert saved["hflip"] == 0.0 and saved["random_resized_crop"]["scale"] == [0.8, 1.0]


def test_peft_loads_the_saved_adapters_onto_the_timm_models(tiny_config):
    from peft import PeftModel
    from safetensors import safe_open

    from sladkit.models.backbones import create_backbone
    from sladkit.models.pair import create_pair
    from sladkit.train import checkpoint as ckpt

    config = tiny_config(epochs=2, share="ab", targets="qkv,fc1")
    run(config)
    out = Path(config.out)
    trained = create_pair(
        config, num_classes=15, image_size=32, teacher_adapter=True, shared=True, student_ft=False
    )
    ckpt.load_model_state(out / "checkpoints/best", trained)  # what export takes by default
    trained.eval()
    x = torch.randn(4, 3, 32, 32)
    for role in ("teacher", "student"):
        plain = create_backbone(
            getattr(config, role),
            role=role,
            image_size=32,
            pretrained=False,
            kwargs=getattr(config, f"{role}_kwargs"),
        )
        base = {
            k.removeprefix(f"{role}.backbone."): v
            for k, v in trained.state_dict().items()
            if k.startswith(f"{role}.backbone.") and "lora_" not in k
        }
        plain.load_state_dict({k.replace(".base.", "."): v for k, v in base.items()})
        with torch.no_grad():
            without_adapters = plain.eval().forward_features(x)
            peft_model = PeftModel.from_pretrained(plain, out / "adapters" / role).eval()
            expected = getattr(trained, role).backbone.forward_features(x)
            got = peft_model.base_model.model.forward_features(x)
        assert not torch.allclose(without_adapters, expected, atol=1e-4), "training changed nothing"
        assert torch.allclose(got, expected, atol=1e-5), role
        with safe_open(out / "adapters" / role / "head.safetensors", "pt") as f:
            assert f.metadata()["checkpoint"] == "best" and f.metadata()["class"] == "ClassificationHead"
        head = load_file(out / "adapters" / role / "head.safetensors")
        own = getattr(trained, role).head.state_dict()
        assert head.keys() == own.keys() and all(torch.equal(head[k], own[k]) for k in own)


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sladkit",
        "train",
        "--out",
        str(out),
        "--no-progress",
        "--teacher-kwargs",
        '{"depth": 2, "init_values": 1.0}',
        "--student-kwargs",
        '{"depth": 2, "init_values": 1.0}',
        "--synthetic-train",
        "256",
        "--synthetic-val",
        "64",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--rank",
        "4",
        "--no-pretrained",
        "--lora-dropout",
        "0.1",
        *extra,
    ]


def test_resume_after_a_kill_reaches_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(reference), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = killed / "checkpoints/last/state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = json.loads(state_file.read_text())["epoch"]
    assert 1 <= interrupted_at < 4, "the run must be killed before it finished"

    done = subprocess.run(_train_cmd(killed, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    a = load_file(reference / "checkpoints/last/model.safetensors")
    b = load_file(killed / "checkpoints/last/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    epochs = [json.loads(line)["epoch"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3, 4]  # no record lost or repeated


def _stop_before_step(monkeypatch, step: int, sig=signal.SIGINT) -> None:
    """Deliver `sig` to this process just before optimizer step `step` (as Ctrl-C or a scheduler would)."""
    from sladkit.train import loop

    train_step = loop.Trainer.train_step

    def signalled(self, stage, model, optimizer, scaler, micro_batches, seed, progress):
        if progress.global_step + 1 == step:
            os.kill(os.getpid(), sig)
        return train_step(self, stage, model, optimizer, scaler, micro_batches, seed, progress)

    monkeypatch.setattr(loop.Trainer, "train_step", signalled)


def test_sigterm_mid_epoch_checkpoints_and_resume_reaches_the_same_weights(
    tiny_config, tmp_path, monkeypatch
):
    from sladkit.train.interrupt import INTERRUPTED_EXIT_CODE, TrainingInterrupted

    # 4 steps an epoch; dropout and augmentation on: both must be reseeded where the run resumes.
    options = dict(epochs=2, batch_size=16, synthetic_train=64, lora_dropout=0.1)
    run(tiny_config(out=str(tmp_path / "reference"), **options))
    config = tiny_config(out=str(tmp_path / "stopped"), **options)
    sig = signal.SIGTERM  # SIGINT (Ctrl-C) takes the same path: tests/test_cli.py
    _stop_before_step(monkeypatch, 7, sig)  # epoch 2, its 3rd step
    with pytest.raises(TrainingInterrupted) as stopped:
        run(config)
    assert stopped.value.exit_code == INTERRUPTED_EXIT_CODE == 75
    assert str(stopped.value) == "interrupted at step 7; checkpoint written; continue with --resume"
    state = json.loads((Path(config.out) / "checkpoints/last/state.json").read_text())
    assert state["interrupted"] and (state["epoch"], state["epoch_step"], state["global_step"]) == (1, 3, 7)
    assert signal.getsignal(sig) is not None  # the previous handler is back

    monkeypatch.undo()
    run(config.replace(resume=True))
    a, b = (
        load_file(tmp_path / "reference/checkpoints/last/model.safetensors"),
        load_file(Path(config.out) / "checkpoints/last/model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda path: [  # noqa: E731
        {k: v for k, v in json.loads(line).items() if k not in ("images_per_s", "elapsed_s")}
        for line in (path / "metrics.jsonl").read_text().splitlines()
    ]
    assert strip(Path(config.out)) == strip(tmp_path / "reference")


def test_accumulation_and_activation_checkpointing_keep_the_weights(tiny_config, tmp_path):
    # qkv alone: with all four targets (the default) a few LoRA entries of these random-init models get
    # gradients near Adam's eps, whose update g / (|g| + eps) turns float32 rounding of the micro-batch
    # sums into weight differences of ~4e-5 after 2 steps (measured; activation checkpointing alone is
    # bit-exact there too); on qkv the rounding stays ~2e-7.
    options = dict(epochs=1, synthetic_train=64, targets="qkv")
    run(tiny_config(out=str(tmp_path / "plain"), **options))
    run(tiny_config(out=str(tmp_path / "saving"), accumulate=4, activation_checkpointing=True, **options))
    a = load_file(tmp_path / "plain/checkpoints/last/model.safetensors")
    b = load_file(tmp_path / "saving/checkpoints/last/model.safetensors")
    # 4 micro-batches of 8 sum their means / 4 where one batch of 32 takes one mean: float32 rounding only.
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


def test_cache_teacher_reuses_the_frozen_teachers_outputs_without_changing_the_result(tiny_config, tmp_path):
    options = dict(method="lora-kd", epochs=2, teacher_epochs=1, augment=False)
    plain = run(tiny_config(out=str(tmp_path / "plain"), **options))
    cached = run(tiny_config(out=str(tmp_path / "cached"), cache_teacher=True, **options))
    a = load_file(tmp_path / "plain/checkpoints/last/model.safetensors")
    b = load_file(tmp_path / "cached/checkpoints/last/model.safetensors")
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)
    assert cached.student == pytest.approx(plain.student)
    saved = json.loads((tmp_path / "cached/config.json").read_text())["train"]
    assert saved["cache_teacher"] is True and saved["augment"] is False  # timings stay comparable


def test_bf16_autocast_trains_on_the_cpu(tiny_config):
    result = run(tiny_config(epochs=1, precision="bf16", task="seg"))
    assert 0.0 <= result.student <= 100.0 and 0.0 <= result.cka_after <= 1.0


def test_the_frozen_teacher_base_is_stored_in_half_precision_and_lora_still_learns():
    from sladkit.config import TrainConfig
    from sladkit.models.pair import create_pair
    from sladkit.train.precision import autocast, half_frozen_base

    tiny = {"depth": 2, "init_values": 1.0}
    config = TrainConfig(pretrained=False, teacher_kwargs=tiny, student_kwargs=tiny, rank=4)
    pair = create_pair(
        config, num_classes=3, image_size=32, teacher_adapter=True, shared=True, student_ft=False
    )
    backbone = pair.teacher.backbone
    for name, p in backbone.named_parameters():
        p.requires_grad_(".lora_" in name)
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    assert half_frozen_base(backbone, "fp32") == 0
    assert half_frozen_base(backbone, "bf16") > 0
    dtypes = {".lora_" in n: {p.dtype} for n, p in backbone.named_parameters()}
    assert dtypes == {True: {torch.float32}, False: {torch.bfloat16}}
    with autocast("bf16", torch.device("cpu")):
        logits = pair.teacher(torch.randn(2, 3, 32, 32))
    logits.float().sum().backward()
    assert all(
        p.grad is not None and p.grad.dtype == torch.float32 for p in backbone.parameters() if p.requires_grad
    )


@pytest.mark.parametrize("method", list(METHODS))
def test_every_trainable_parameter_gets_a_gradient_so_ddp_needs_no_unused_parameter_search(
    tiny_config, method
):
    """DistributedDataParallel is built per stage over the trainable parameters, without
    find_unused_parameters: each of them must receive a gradient in every step of its stage."""
    from sladkit.models.pair import create_pair
    from sladkit.train.loop import Trainer
    from sladkit.train.stages import StageForward, student_mode

    m = METHODS[method]
    for adapt in ("lora", "ft") if not m.shared else ("lora",):
        config = tiny_config(method=method, student_adapt=adapt)
        pair = create_pair(
            config, num_classes=3, image_size=32, teacher_adapter=m.teacher_adapter, shared=m.shared,
            student_ft=adapt == "ft" and not m.shared,
        )  # fmt: skip
        trainer = Trainer(
            config, m, pair, [None] * 32, [None] * 8, 3, Path(config.out), teacher_backbone_saved=True
        )
        for stage in m.stages:
            trainer.set_trainable(stage)
            trainer.set_modes(stage)
            pair.zero_grad(set_to_none=True)
            images, target = torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))
            logits = StageForward(pair, stage, student_mode(stage, config))(images, torch.arange(4))
            sum(trainer.stage_losses(stage, *logits, target).values()).backward()
            missing = [n for n, p in pair.named_parameters() if p.requires_grad and p.grad is None]
            assert not missing, (stage.name, adapt, missing[:3])


def test_kd_warmup_ramps_the_kd_weight_linearly_over_its_epochs_then_holds_it(tiny_config):
    """--kd-warmup-epochs 2 with 1 step per epoch: KD at 1/2 of its weight on step 0, full from step 1;
    the task terms are untouched, and 0 (the default) gives the full weight from the first step."""
    from sladkit.models.pair import create_pair
    from sladkit.train.loop import Progress, Trainer

    m = METHODS["slad"]
    for warmup, expected in ((0.0, [1.0, 1.0, 1.0]), (2.0, [1 / 2, 1.0, 1.0]), (1.5, [1 / 2, 1.0, 1.0])):
        config = tiny_config(kd_warmup_epochs=warmup, lambda_kd=0.5, batch_size=32)
        pair = create_pair(
            config, num_classes=3, image_size=32, teacher_adapter=True, shared=True, student_ft=False
        )
        trainer = Trainer(
            config, m, pair, [None] * 32, [None] * 8, 3, Path(config.out), teacher_backbone_saved=True
        )
        assert trainer.plan.steps == 1
        scales = [trainer.kd_scale(Progress(step=s)) for s in range(3)]
        assert scales == pytest.approx(expected), (warmup, scales)

    torch.manual_seed(0)
    teacher, student, target = torch.randn(4, 3), torch.randn(4, 3), torch.randint(0, 3, (4,))
    stage = m.stages[0]
    full = trainer.stage_losses(stage, teacher, student, target)
    half = trainer.stage_losses(stage, teacher, student, target, kd_scale=0.25)
    assert full["loss_kd"] > 0
    assert half["loss_kd"].item() == pytest.approx(0.25 * full["loss_kd"].item())
    assert half["loss_student"].item() == full["loss_student"].item()
    assert half["loss_teacher"].item() == full["loss_teacher"].item()
