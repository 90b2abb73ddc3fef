"""Evaluation metrics: top-1 accuracy, mean IoU, and linear CKA (teacher-student feature alignment).

Linear CKA (Kornblith et al., ICML 2019): for centred features X (n, d1) and Y (n, d2),
CKA = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F); 1 means the two representations agree up to rotation and scale.
`CkaMoments` computes the same from sums that add up over batches and processes, so an evaluation split
over several processes needs no gathering of features.
"""

from __future__ import annotations

import torch

from sladkit.train.losses import IGNORE_INDEX


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between two feature matrices with the same number of rows (samples)."""
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"CKA needs the same number (>= 2) of samples, got {x.shape[0]} and {y.shape[0]}")
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = (y.T @ x).norm() ** 2
    norm = (x.T @ x).norm() * (y.T @ y).norm()
    return float(cross / norm) if norm > 0 else 0.0


class CkaMoments:
    """Linear CKA from float64 sums over samples: n, Σx, Σy, XᵀX, YᵀX, YᵀY (summable across processes).

    Centring uses XcᵀXc = XᵀX − n·μxμxᵀ (and likewise for the others); memory is O(d²), not O(n·d).
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch of paired features x (n, d1) and y (n, d2)."""
        x, y = x.double(), y.double()
        batch = {
            "n": x.new_tensor([x.shape[0]]),
            "sx": x.sum(0),
            "sy": y.sum(0),
            "xx": x.T @ x,
            "yx": y.T @ x,
            "yy": y.T @ y,
        }
        for key, value in batch.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value

    def flat(self) -> torch.Tensor:
        """All sums in one vector (to all-reduce); `load_flat` puts a reduced one back."""
        return torch.cat([v.flatten() for v in self.sums.values()])

    def load_flat(self, flat: torch.Tensor) -> None:
        offset = 0
        for key, value in self.sums.items():
            self.sums[key] = flat[offset : offset + value.numel()].view_as(value).to(value.device)
            offset += value.numel()

    def value(self) -> float:
        s = self.sums
        n = float(s["n"].item())
        if n < 2:
            raise ValueError(f"CKA needs at least 2 samples, got {n:.0f}")
        mx, my = s["sx"] / n, s["sy"] / n
        xx = s["xx"] - n * torch.outer(mx, mx)
        yx = s["yx"] - n * torch.outer(my, mx)
        yy = s["yy"] - n * torch.outer(my, my)
        norm = xx.norm() * yy.norm()
        return float(yx.norm() ** 2 / norm) if norm > 0 else 0.0


class ConfusionMatrix:
    """Accumulates a (classes x classes) confusion matrix; rows are targets, columns predictions."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        pred = logits.argmax(dim=1).flatten()
        target = target.flatten()
        keep = target != IGNORE_INDEX
        index = target[keep] * self.num_classes + pred[keep]
        self.matrix += torch.bincount(index.cpu(), minlength=self.num_classes**2).view_as(self.matrix)

    def accuracy(self) -> float:
        """Top-1 accuracy in percent."""
        total = self.matrix.sum()
        return float(100.0 * self.matrix.diag().sum() / total) if total else 0.0

    def mean_iou(self) -> float:
        """Mean IoU in percent over the classes present in targets or predictions."""
        tp = self.matrix.diag().double()
        union = self.matrix.sum(0).double() + self.matrix.sum(1).double() - tp
        present = union > 0
        return float(100.0 * (tp[present] / union[present]).mean()) if present.any() else 0.0

    def value(self, task: str) -> float:
        return self.accuracy() if task == "cls" else self.mean_iou()


def metric_name(task: str) -> str:
    return "acc" if task == "cls" else "miou"
