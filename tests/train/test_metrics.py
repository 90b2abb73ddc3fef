"""Accuracy, mIoU, linear CKA, and the loss terms."""

from __future__ import annotations

import pytest
import torch

from sladkit.train.losses import kd_loss, task_loss
from sladkit.train.metrics import CkaMoments, ConfusionMatrix, linear_cka


def test_cka_is_one_for_rotated_and_scaled_copies_and_low_for_independent_features():
    torch.manual_seed(0)
    x = torch.randn(500, 16)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16))
    assert linear_cka(x, 3.0 * x @ rotation) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(500, 32)) < 0.1
    y = torch.cat([x, torch.randn(500, 16)], dim=1)  # half the dimensions shared
    assert 0.3 < linear_cka(x, y) < 0.9


def test_cka_from_summed_moments_equals_cka_of_the_gathered_features():
    torch.manual_seed(1)
    x = torch.randn(300, 12) + 5.0  # an offset: centring must happen in the sums too
    y = x[:, :6] @ torch.randn(6, 8) + 0.5 * torch.randn(300, 8)
    whole, parts = CkaMoments(), [CkaMoments(), CkaMoments()]
    whole.update(x, y)
    parts[0].update(x[:100], y[:100])  # two processes with uneven shares
    parts[1].update(x[100:], y[100:])
    parts[0].load_flat(parts[0].flat() + parts[1].flat())  # what the all-reduce does
    assert whole.value() == pytest.approx(linear_cka(x, y), abs=1e-9)
    assert parts[0].value() == pytest.approx(linear_cka(x, y), abs=1e-9)


def test_cka_needs_matching_samples():
    with pytest.raises(ValueError, match="same number"):
        linear_cka(torch.randn(5, 2), torch.randn(4, 2))


def test_accuracy_and_miou_by_hand():
    cls = ConfusionMatrix(3)
    cls.update(torch.tensor([[9.0, 0, 0], [0, 9.0, 0], [0, 9.0, 0], [0, 0, 9.0]]), torch.tensor([0, 1, 2, 2]))
    assert cls.accuracy() == pytest.approx(75.0)
    seg = ConfusionMatrix(2)
    logits = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]])  # predicts [[0, 0], [1, 1]]
    target = torch.tensor([[[0, 1], [1, 255]]])  # 255 ignored
    seg.update(logits, target)
    # class 0: tp 1, fp 1, fn 0 -> 1/2; class 1: tp 1, fp 0, fn 1 -> 1/2
    assert seg.mean_iou() == pytest.approx(50.0)


def test_kd_is_zero_for_equal_logits_and_scales_with_t_squared():
    z = torch.randn(8, 5)
    target = torch.zeros(8, dtype=torch.long)
    assert kd_loss(z, z, target, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    zs, zt = torch.randn(8, 5), torch.randn(8, 5)
    kl = torch.nn.functional.kl_div(
        zs.log_softmax(1), zt.log_softmax(1), log_target=True, reduction="batchmean"
    )
    assert kd_loss(zs, zt, target, 1.0).item() == pytest.approx(kl.item(), rel=1e-5)


def test_segmentation_losses_ignore_255():
    logits_s, logits_t = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    target = torch.randint(0, 4, (2, 3, 3))
    ignored = target.clone()
    ignored[:, 0] = 255
    changed_s = logits_s.clone()
    changed_s[:, :, 0] += 10.0  # only on ignored pixels
    assert task_loss(changed_s, ignored).item() == pytest.approx(task_loss(logits_s, ignored).item())
    assert kd_loss(changed_s, logits_t, ignored, 1.0).item() == pytest.approx(
        kd_loss(logits_s, logits_t, ignored, 1.0).item()
    )
