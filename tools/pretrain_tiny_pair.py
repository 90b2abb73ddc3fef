"""Pretrain sladkit's tiny "foundation" ViT pair: a teacher on a broad procedural pretext, a student distilled from it.

The teacher `sladkit_vit_192_p8` and the student `sladkit_vit_96_p8` (depth 6, head size 32, patch 8,
32 px) train from random init in one loop on fresh batches of `sladkit.data.pretext` (eight procedural
families, 127 classes, plus a dense per-patch target). Each has temporary heads (discarded): a linear
classifier on [CLS || mean patch token] after the final norm and a linear per-patch classifier. The
student is also *distilled from the teacher* as it learns, the way DINOv2's small models are distilled
from its largest one, which makes the pair a family whose features line up: a linear projection of
each student token is pulled towards the teacher's token (cosine), and the student's logits towards the
teacher's (KL). The distillation weight ramps up over the first `--kd-ramp` of the steps, while the
teacher is still weak.

Every batch is rendered on the training device from `(seed, step)` alone, so a run is reproducible and
resumes exactly: `--resume` continues from the last checkpoint of `--run` (written atomically every
`--save-every` steps; a kill loses at most that many steps). On a CUDA GPU the same command runs in
bfloat16 autocast; pass a larger `--batch-size` there. At the end the backbones are written as float16
safetensors with timm keys to `--export` (default: the package's weights folder, which is what
`sladkit.models.backbones.create_backbone(..., pretrained=True)` loads for the tiny models), with the
pretext curves (`curves.png`) and `metrics.jsonl` in `--run`.

    # the shipped weights' recipe: two stages, the second starting from the first's backbones (--init)
    python tools/pretrain_tiny_pair.py --export runs/pretrain-tiny-pair/weights
    python tools/pretrain_tiny_pair.py --init runs/pretrain-tiny-pair/weights --seed 1 --steps 12000 \
        --kd-ramp 0 --run runs/pretrain-stage2
    python tools/pretrain_tiny_pair.py ... --resume             # after a kill: the same options + --resume
    python tools/pretrain_tiny_pair.py --init DIR --teacher-only ...   # the teacher alone, the student kept
    python tools/pretrain_tiny_pair.py --smoke --run /tmp/p --export /tmp/w   # seconds; for the tests
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sladkit._atomic import atomic_dir, atomic_write_text, recover_dir  # noqa: E402
from sladkit.data.pretext import (  # noqa: E402
    BACKGROUND,
    FAMILIES,
    IGNORE,
    NUM_CLASSES,
    PretextGenerator,
    batch_generator,
    family_of,
)

DEFAULT_EXPORT = ROOT / "sladkit" / "models" / "weights"
DEFAULT_RUN = ROOT / "runs" / "pretrain-tiny-pair"
MODELS = {"teacher": "sladkit_vit_192_p8", "student": "sladkit_vit_96_p8"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VAL_SEED_OFFSET = 1_000_000  # the validation stream is seed + this: never a training batch
RECIPE = (  # the options that define the weights; --resume refuses to change them
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup",
    "seed",
    "patch_weight",
    "feat_weight",
    "kd_weight",
    "kd_ramp",
    "smoke",
    "init",
    "teacher_only",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=DEFAULT_RUN, help="folder for checkpoints, metrics, curves")
    p.add_argument("--export", type=Path, default=DEFAULT_EXPORT, help="folder for the final .safetensors")
    p.add_argument("--steps", type=int, default=7000, help="optimizer steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate of both models")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay on matrices")
    p.add_argument("--warmup", type=float, default=0.05, help="linear warm-up, fraction of the steps")
    p.add_argument("--seed", type=int, default=0, help="init and data stream seed")
    p.add_argument("--patch-weight", type=float, default=0.5, help="weight of the per-patch pretext loss")
    p.add_argument(
        "--feat-weight", type=float, default=1.0, help="weight of the student's token distillation"
    )
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of the student's logit distillation")
    p.add_argument("--kd-ramp", type=float, default=0.2, help="distillation ramp-up, fraction of the steps")
    p.add_argument("--eval-every", type=int, default=500, help="steps between pretext evaluations")
    p.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--val-images", type=int, default=2048, help="pretext validation images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run")
    p.add_argument(
        "--init",
        default=None,
        help="folder with both backbones' .safetensors (an --export folder) to start from instead of random "
        "init: a second stage continues a finished run (heads and projector start afresh)",
    )
    p.add_argument(
        "--export-only",
        action="store_true",
        help="write the backbones of --run's last checkpoint to --export (its own recipe), no training",
    )
    p.add_argument(
        "--teacher-only",
        action="store_true",
        help="train the teacher's backbone alone: the student's (from --init) is frozen and exported unchanged",
    )
    p.add_argument("--smoke", action="store_true", help="depth-1 models, a few steps: checks the tool runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line per evaluation)")
    args = p.parse_args(argv)
    if args.teacher_only and not args.init:  # refused before anything is written
        sys.exit("--teacher-only keeps the student as it is: pass --init with a pretrained pair")
    if args.smoke:
        args.steps, args.batch_size = min(args.steps, 6), min(args.batch_size, 16)
        args.eval_every, args.save_every, args.val_images = 3, 3, 32
    return args


class Pretrainer(nn.Module):
    """A backbone with its temporary pretext heads (and, for the student, the token projector)."""

    def __init__(self, name: str, *, smoke: bool, teacher_width: int | None = None) -> None:
        super().__init__()
        import timm

        import sladkit.models.backbones  # noqa: F401  (registers the tiny models with timm)

        kwargs = {"depth": 1} if smoke else {}
        self.backbone = timm.create_model(name, num_classes=0, **kwargs)
        width = self.backbone.embed_dim
        self.head = nn.Linear(2 * width, NUM_CLASSES)
        self.patch_head = nn.Linear(width, NUM_CLASSES + 1)
        self.project = nn.Linear(width, teacher_width) if teacher_width else None

    def forward(self, x: torch.Tensor):
        tokens = self.backbone.forward_features(x)  # (B, 1 + N, D), after the final norm
        patches = tokens[:, self.backbone.num_prefix_tokens :]  # (B, N, D)
        logits = self.head(torch.cat([tokens[:, 0], patches.mean(1)], 1))  # (B, C)
        return tokens, logits, self.patch_head(patches)  # (B, N, C + 1)


def losses(args, step: int, batch, teacher: Pretrainer, student: Pretrainer, mean, std) -> dict:
    x = (batch.images - mean) / std
    patch_y = batch.patch_labels.flatten(1)  # (B, N)
    t_tokens, t_logits, t_patch = teacher(x)
    s_tokens, s_logits, s_patch = student(x)
    out = {
        "teacher_cls": F.cross_entropy(t_logits.float(), batch.labels),
        "teacher_patch": F.cross_entropy(
            t_patch.flatten(0, 1).float(), patch_y.flatten(), ignore_index=IGNORE
        ),
        "student_cls": F.cross_entropy(s_logits.float(), batch.labels),
        "student_patch": F.cross_entropy(
            s_patch.flatten(0, 1).float(), patch_y.flatten(), ignore_index=IGNORE
        ),
        "feat": 1
        - F.cosine_similarity(student.project(s_tokens).float(), t_tokens.detach().float(), dim=-1).mean(),
        "kd": F.kl_div(
            F.log_softmax(s_logits.float(), 1),
            F.log_softmax(t_logits.detach().float(), 1),
            log_target=True,
            reduction="batchmean",
        ),
    }
    ramp = min(1.0, (step + 1) / max(1, args.kd_ramp * args.steps))
    out["teacher"] = out["teacher_cls"] + args.patch_weight * out["teacher_patch"]
    out["student"] = (
        out["student_cls"]
        + args.patch_weight * out["student_patch"]
        + ramp * (args.feat_weight * out["feat"] + args.kd_weight * out["kd"])
    )
    return out


def lr_at(args, step: int) -> float:
    warmup = max(1, round(args.warmup * args.steps))
    if step < warmup:
        return args.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, args.steps - warmup)
    return args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def create_optimizer(args, model: nn.Module) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # no weight decay on biases, norms, tokens
    rest = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )


@torch.no_grad()
def evaluate(args, val, teacher, student, mean, std, autocast) -> dict:
    """Pretext top-1 (overall and per family), patch accuracy and teacher-student token cosine."""
    teacher.eval(), student.eval()
    correct = {"teacher": [], "student": []}
    patch_hits = {"teacher": [0, 0], "student": [0, 0]}
    cosine = []
    for batch in val:
        with autocast():
            x = (batch.images - mean) / std
            t_tokens, t_logits, t_patch = teacher(x)
            s_tokens, s_logits, s_patch = student(x)
            cosine.append(
                F.cosine_similarity(student.project(s_tokens).float(), t_tokens.float(), dim=-1).mean()
            )
        patch_y = batch.patch_labels.flatten(1)
        keep = patch_y != IGNORE
        for role, logits, patch in (("teacher", t_logits, t_patch), ("student", s_logits, s_patch)):
            correct[role].append(logits.argmax(1) == batch.labels)
            patch_hits[role][0] += int((patch.argmax(-1) == patch_y)[keep].sum())
            patch_hits[role][1] += int(keep.sum())
    teacher.train(), student.train()
    labels = torch.cat([b.labels for b in val])
    family = family_of(labels)
    out = {"token_cosine": round(float(torch.stack(cosine).mean()), 4)}
    for role in ("teacher", "student"):
        hit = torch.cat(correct[role])
        out[f"{role}_acc"] = round(float(hit.float().mean()), 4)
        out[f"{role}_patch_acc"] = round(patch_hits[role][0] / max(1, patch_hits[role][1]), 4)
        out[f"{role}_family_acc"] = {
            f: round(float(hit[family == i].float().mean()), 4)
            for i, f in enumerate(FAMILIES)
            if (family == i).any()
        }
    return out


def save_checkpoint(folder: Path, step: int, args, teacher, student, optimizers) -> None:
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        state = {f"teacher.{k}": v for k, v in teacher.state_dict().items()}
        state.update({f"student.{k}": v for k, v in student.state_dict().items()})
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / "models.safetensors")
        )
        torch.save({role: opt.state_dict() for role, opt in optimizers.items()}, tmp / "optimizer.pt")
        recipe = {k: getattr(args, k) for k in RECIPE}
        (tmp / "state.json").write_text(json.dumps({"step": step, "recipe": recipe}, indent=1))


def load_checkpoint(folder: Path, args, teacher, student, optimizers, device) -> int:
    from safetensors.torch import load_file

    recover_dir(folder)
    state_file = folder / "state.json"
    if not state_file.is_file():
        sys.exit(f"--resume: no checkpoint in {folder} (state.json missing); start without --resume")
    state = json.loads(state_file.read_text())
    changed = {k: (v, getattr(args, k)) for k, v in state["recipe"].items() if getattr(args, k) != v}
    if changed:
        sys.exit(f"--resume: options differ from the run's ({changed}); rerun with the run's options")
    weights = load_file(str(folder / "models.safetensors"), device=str(device))
    teacher.load_state_dict({k[8:]: v for k, v in weights.items() if k.startswith("teacher.")})
    student.load_state_dict({k[8:]: v for k, v in weights.items() if k.startswith("student.")})
    saved = torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
    for role, opt in optimizers.items():
        opt.load_state_dict(saved[role])
    return int(state["step"])


def init_backbones(folder: Path, teacher, student, device) -> None:
    """Load both backbones from an --export folder (float16 files are widened to float32)."""
    from safetensors.torch import load_file

    for role, model in (("teacher", teacher), ("student", student)):
        path = folder / f"{MODELS[role]}.safetensors"
        if not path.is_file():
            sys.exit(f"--init: {path} not found; pass a folder written by --export")
        state = {k: v.float() for k, v in load_file(str(path), device=str(device)).items()}
        try:
            model.backbone.load_state_dict(state)
        except RuntimeError as e:
            sys.exit(f"--init: {path} does not fit {MODELS[role]} ({str(e).splitlines()[0]})")
        print(f"[{role}] initialised from {path}", flush=True)


def export_backbones(args, step: int, teacher, student, metrics: dict, device, mean, std, val) -> None:
    """fp16 timm-key backbones in --export, checked by reloading them through sladkit's loader."""
    from safetensors.torch import save_file

    from sladkit.models.backbones import create_backbone

    args.export.mkdir(parents=True, exist_ok=True)
    for role, model in (("teacher", teacher), ("student", student)):
        name = MODELS[role]
        path = args.export / f"{name}.safetensors"
        state = {
            k: v.detach().to(torch.float16).cpu().contiguous() for k, v in model.backbone.state_dict().items()
        }
        meta = {
            "pretext": "sladkit.data.pretext",
            "tool": "tools/pretrain_tiny_pair.py",
            "steps": str(step),
            "recipe_steps": str(args.steps),
            "batch_size": str(args.batch_size),
            "seed": str(args.seed),
            "init": str(args.init or "random"),
            "pretext_val_acc": str(metrics[f"{role}_acc"]),
        }
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(state, str(tmp), metadata=meta)
        tmp.replace(path)
        if args.smoke:  # depth-1 models do not fit the registered architecture
            continue
        loaded = create_backbone(name, role=role, image_size=32, weights=str(path)).to(device).eval()
        x = ((val[0].images - mean) / std)[:64]
        with torch.no_grad():
            diff = (loaded.forward_features(x) - model.backbone.forward_features(x)).abs().max().item()
        print(
            f"[{role}] wrote {path} ({path.stat().st_size / 1e6:.1f} MB), reload max |diff| {diff:.1e}",
            flush=True,
        )


def plot_curves(run: Path) -> None:
    """curves.png: teacher and student pretext accuracy (top-1 and per patch) against steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    rows = [r for r in rows if "teacher_acc" in r]
    steps = [r["step"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for role, style in (("teacher", "-"), ("student", "--")):
        ax1.plot(steps, [100 * r[f"{role}_acc"] for r in rows], style, label=f"{role} image top-1")
        ax1.plot(steps, [100 * r[f"{role}_patch_acc"] for r in rows], style, label=f"{role} patch top-1")
    ax1.set(
        xlabel="step", ylabel="pretext val accuracy (%)", title=f"Pretext accuracy ({NUM_CLASSES} classes)"
    )
    ax1.legend()
    ax2.plot(steps, [r["token_cosine"] for r in rows], label="student->teacher token cosine")
    ax2.plot(steps, [r["loss_teacher"] for r in rows], label="teacher train loss")
    ax2.plot(steps, [r["loss_student"] for r in rows], label="student train loss")
    ax2.set(xlabel="step", title="Losses and alignment")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = args.run / "checkpoint"
    if args.export_only:  # the checkpoint's own recipe
        recover_dir(ckpt)
        if not (ckpt / "state.json").is_file():
            sys.exit(f"--export-only: no checkpoint in {ckpt} (state.json missing)")
        for key, value in json.loads((ckpt / "state.json").read_text())["recipe"].items():
            setattr(args, key, value)
        args.resume = True
    if not args.resume and (ckpt / "state.json").exists():
        sys.exit(f"{args.run} already holds a pretraining run; pass --resume to continue it or another --run")
    args.run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    teacher = Pretrainer(MODELS["teacher"], smoke=args.smoke).to(device)
    student = Pretrainer(MODELS["student"], smoke=args.smoke, teacher_width=teacher.backbone.embed_dim).to(
        device
    )
    if args.init and not args.resume:
        init_backbones(Path(args.init), teacher, student, device)
    if args.teacher_only:  # the student's backbone stays as --init gave it; its heads and projector still
        student.backbone.requires_grad_(False)  # train, so its pretext metrics and token cosine stay readable
    optimizers = {"teacher": create_optimizer(args, teacher), "student": create_optimizer(args, student)}
    start = load_checkpoint(ckpt, args, teacher, student, optimizers, device) if args.resume else 0
    if args.export_only:
        pass  # the run's files stay as they are
    elif args.resume:  # drop evaluations logged after the checkpoint: they are redone
        lines = (args.run / "metrics.jsonl").read_text().splitlines()
        kept = [line for line in lines if line and json.loads(line)["step"] <= start]
        atomic_write_text(args.run / "metrics.jsonl", "".join(line + "\n" for line in kept))
    else:
        (args.run / "metrics.jsonl").write_text("")
        atomic_write_text(
            args.run / "args.json", json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1)
        )
    mean = torch.tensor(MEAN, device=device)[:, None, None]
    std = torch.tensor(STD, device=device)[:, None, None]
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        if device.type == "cuda"
        else (lambda: torch.autocast("cpu", enabled=False))
    )
    gen = PretextGenerator(32, 8, device)
    val_chunk = min(512, args.val_images)
    val = [
        gen.batch(val_chunk, batch_generator(args.seed + VAL_SEED_OFFSET, i, device))
        for i in range(math.ceil(args.val_images / val_chunk))
    ]
    print(
        f"pretraining {MODELS['teacher']} + {MODELS['student']} on {device}: steps {start}->{args.steps}, "
        f"batch {args.batch_size}, {NUM_CLASSES} pretext classes (+ background {BACKGROUND} per patch)",
        flush=True,
    )
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=args.steps, initial=start, unit="step", dynamic_ncols=True)
    t0, running, count = time.time(), {"teacher": 0.0, "student": 0.0}, 0
    params = {"teacher": list(teacher.parameters()), "student": list(student.parameters())}
    done = start
    for step in range(start, start if args.export_only else args.steps):
        batch = gen.batch(args.batch_size, batch_generator(args.seed, step, device))
        for opt in optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr_at(args, step)
        with autocast():
            out = losses(args, step, batch, teacher, student, mean, std)
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        (out["teacher"] + out["student"]).backward()  # disjoint parameters: one backward for both
        for role, opt in optimizers.items():
            torch.nn.utils.clip_grad_norm_(params[role], 1.0)
            opt.step()
        running["teacher"] += out["teacher"].item()
        running["student"] += out["student"].item()
        count += 1
        done = step + 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(t=f"{out['teacher'].item():.2f}", s=f"{out['student'].item():.2f}")
        if done % args.eval_every == 0 or done == args.steps:
            metrics = evaluate(args, val, teacher, student, mean, std, autocast)
            row = {
                "step": done,
                "lr": lr_at(args, step),
                "loss_teacher": round(running["teacher"] / count, 4),
                "loss_student": round(running["student"] / count, 4),
                "feat": round(out["feat"].item(), 4),
                "kd": round(out["kd"].item(), 4),
                **metrics,
                "s_per_step": round((time.time() - t0) / count, 4),
            }
            running, count, t0 = {"teacher": 0.0, "student": 0.0}, 0, time.time()
            with open(args.run / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            line = (
                f"step {done}/{args.steps}: pretext val top-1 teacher {100 * row['teacher_acc']:.1f} %, "
                f"student {100 * row['student_acc']:.1f} %; patch {100 * row['teacher_patch_acc']:.1f} / "
                f"{100 * row['student_patch_acc']:.1f} %; token cosine {row['token_cosine']:.3f}; "
                f"{row['s_per_step']:.3f} s/step"
            )
            (progress.write if progress is not None else print)(line)
            sys.stdout.flush()
        if done % args.save_every == 0 or done == args.steps:
            save_checkpoint(ckpt, done, args, teacher, student, optimizers)
    if progress is not None:
        progress.close()
    rows = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines() if line]
    rows = [r for r in rows if r["step"] <= done]
    export_backbones(args, rows[-1]["step"], teacher.eval(), student.eval(), rows[-1], device, mean, std, val)
    if not args.export_only:
        plot_curves(args.run)
    print(f"done: {args.run / 'metrics.jsonl'}, {args.run / 'curves.png'}", flush=True)


if __name__ == "__main__":
    main()
