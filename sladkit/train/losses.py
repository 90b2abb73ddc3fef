"""The SLAD loss (`docs/method.md`, "Loss").

L = λ_s · task(student) + λ_t · task(teacher) + λ_kd · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)),
per pixel for segmentation, ignoring label 255.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def task_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; logits (B, C) or (B, C, H, W), target (B,) or (B, H, W) with 255 = ignore."""
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T² · KL(teacher ‖ student) at temperature T, averaged over images (or labelled pixels)."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (B,) or (B, H, W)
    if kl.dim() > 1:  # segmentation: only labelled pixels
        valid = target != IGNORE_INDEX
        kl = kl[valid] if valid.any() else kl.new_zeros(1)
    return kl.mean() * t * t
