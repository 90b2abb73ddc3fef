"""Pretrain sladkit's tiny "foundation" ViT pair on the synthetic pretext task and save the backbones.

The teacher `sladkit_vit_192_p8` and the student `sladkit_vit_96_p8` are trained from random init, each
with a temporary linear head on [CLS || mean patch token] (discarded), on `sladkit.data.pretext` (shape x
texture x hue, 60 classes): AdamW, linear warm-up then cosine decay, the sladkit train augmentation. The
backbones are saved as float16 safetensors with timm keys, `<out>/<model>.safetensors`, which is what
`sladkit.models.backbones.create_backbone(..., pretrained=True)` loads for the tiny models.

Each model trains in its own process with `--threads` threads (`--sequential` trains them one after the
other in this process); on a 2-core machine two 1-thread processes are much faster than 2 threads.

    python tools/pretrain_tiny_pair.py --epochs 10 --seed 0
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "sladkit" / "models" / "weights"
MODELS = {"teacher": "sladkit_vit_192_p8", "student": "sladkit_vit_96_p8"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the .safetensors files")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None, help="epochs per model (default 10)")
    budget.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-clock budget per model; sets the epochs from "
        "the speed measured on the first steps (not reproducible across machines: prefer --epochs)",
    )
    p.add_argument("--student-epochs", type=int, default=None, help="student epochs (default: --epochs)")
    p.add_argument("--seed", type=int, default=0, help="data, init, shuffling and augmentation seed")
    p.add_argument("--threads", type=int, default=1, help="torch threads per model")
    p.add_argument("--model", choices=[*MODELS, "both"], default="both", help="which model(s) to train")
    p.add_argument("--sequential", action="store_true", help="train both models in this process, in turn")
    p.add_argument("--num-train", type=int, default=24000, help="pretext training images")
    p.add_argument("--num-val", type=int, default=3000, help="pretext validation images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument(
        "--label",
        choices=["full", "shape-hue"],
        default="full",
        help="pretext label (full: shape x texture x hue; shape-hue: texture as a nuisance, for ablations)",
    )
    return p.parse_args(argv)


def child_command(args: argparse.Namespace, role: str) -> list[str]:
    """This script's command line for training one model in a subprocess."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--model", role, "--out", str(args.out)]
    if args.minutes is not None:
        cmd += ["--minutes", str(args.minutes)]
    elif args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    if args.student_epochs is not None:
        cmd += ["--student-epochs", str(args.student_epochs)]
    for name in (
        "seed",
        "threads",
        "num_train",
        "num_val",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup_epochs",
        "label",
    ):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return cmd


def pooled(model, x):
    """[CLS || mean patch token] after the final norm: (B, 2D)."""
    tokens = model.forward_features(x)  # (B, N, D)
    return torch.cat([tokens[:, 0], tokens[:, model.num_prefix_tokens :].mean(1)], 1)


def evaluate(model, head, loader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (head(pooled(model, x)).argmax(1) == y).sum().item()
            total += len(y)
    model.train()
    return correct / total


def train_one(args: argparse.Namespace, role: str) -> None:
    """Train one model on the pretext task and save its backbone; prints progress prefixed by role."""
    import timm
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader

    import sladkit.models.backbones  # noqa: F401  (registers the tiny models with timm)
    from sladkit.data import transform_config
    from sladkit.data.pretext import HUES, NUM_CLASSES, TEXTURES, create_pretext_datasets
    from sladkit.models.backbones import create_backbone

    name, tag, t0 = MODELS[role], f"[{role}]", time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = transform_config(image_size=32, mean=MEAN, std=STD)
    train, val = create_pretext_datasets(
        transforms=cfg, seed=args.seed, num_train=args.num_train, num_val=args.num_val
    )
    num_classes = NUM_CLASSES
    if args.label == "shape-hue":  # ablation: drop the texture from the label
        for ds in (train, val):
            shape, rest = np.divmod(ds.targets, len(TEXTURES) * len(HUES))
            ds.targets = shape * len(HUES) + rest % len(HUES)
        num_classes = NUM_CLASSES // len(TEXTURES)
    print(f"{tag} rendered {len(train)} + {len(val)} pretext images in {time.time() - t0:.0f}s", flush=True)
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True, generator=generator)
    val_loader = DataLoader(val, batch_size=500)

    model = timm.create_model(name, num_classes=0)
    head = torch.nn.Linear(2 * model.embed_dim, num_classes)
    params = list(model.parameters()) + list(head.parameters())
    decay = [p for p in params if p.ndim >= 2]  # no weight decay on biases, norms, tokens... of dim < 2
    rest = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=args.lr,
    )
    epochs = args.student_epochs if role == "student" and args.student_epochs else args.epochs
    epochs = epochs or 10
    steps_per_epoch = len(loader)
    warmup = max(1, round(args.warmup_epochs * steps_per_epoch))

    def lr_at(step: int, total: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    total = epochs * steps_per_epoch
    step, epoch, t_train = 0, 0, time.time()
    while epoch < epochs:  # `epochs` is fixed after 30 steps with --minutes
        running, count = 0.0, 0
        for x, y in loader:
            if args.minutes is not None and step == 30:  # fix the schedule from the measured speed
                per_step = (time.time() - t_train) / step
                per_epoch = per_step * steps_per_epoch * 1.05  # + evaluation
                left = args.minutes * 60 - (time.time() - t0)
                epochs = max(1, int((left + per_step * step) / per_epoch))
                total = epochs * steps_per_epoch
                print(f"{tag} {per_step:.3f} s/step -> {epochs} epochs in {args.minutes} min", flush=True)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total)
            loss = torch.nn.functional.cross_entropy(head(pooled(model, x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            running, count, step = running + loss.item(), count + 1, step + 1
        acc, epoch = evaluate(model, head, val_loader), epoch + 1
        print(
            f"{tag} epoch {epoch}/{epochs} loss {running / count:.3f} pretext val acc {acc:.4f} "
            f"({time.time() - t0:.0f}s)",
            flush=True,
        )

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.safetensors"
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(
        state,
        str(path),
        metadata={
            "pretext": "sladkit.data.pretext",
            "seed": str(args.seed),
            "epochs": str(epochs),
            "steps": str(step),
            "pretext_val_acc": f"{acc:.4f}",
        },
    )
    # Round trip: the file loads through sladkit's own loader and gives the trained (fp16-rounded) features.
    loaded = create_backbone(name, role=role, image_size=32, weights=str(path)).eval()
    model.eval()
    x = next(iter(val_loader))[0][:64]
    with torch.no_grad():
        diff = (pooled(loaded, x) - pooled(model, x)).abs().max().item()
    print(
        f"{tag} saved {path} ({path.stat().st_size / 1e6:.1f} MB, {step} steps, final pretext val acc "
        f"{acc:.4f}, reload max |diff| {diff:.2e}, {time.time() - t0:.0f}s total)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.time()
    roles = list(MODELS) if args.model == "both" else [args.model]
    if len(roles) == 1 or args.sequential:
        for role in roles:
            train_one(args, role)
    else:
        children = [subprocess.Popen(child_command(args, role)) for role in roles]
        codes = [child.wait() for child in children]
        if any(codes):
            sys.exit(f"training failed (exit codes {codes})")
    print(f"done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
