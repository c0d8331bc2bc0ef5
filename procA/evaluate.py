"""Evaluation on the target val set (spec §5): one confusion matrix over the split -> per-class IoU and mIoU.

``scales=(1.0,), flip=False`` is the single-scale test run during training; the official test.py (whose numbers the
paper reports) averages softmax over scales {0.5, ..., 1.75} of the test-size input and their horizontal flips.
Predictions are upsampled (bilinear, align_corners=True) to the full-resolution label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.metrics.segmentation import ConfusionMatrix


@torch.no_grad()
def multiscale_probs(model: nn.Module, images: Tensor, scales: Sequence[float], flip: bool) -> Tensor:
    """Mean softmax over ``scales`` (x {orig, h-flip}) at the input resolution: (N, C, H, W)."""
    size = images.shape[-2:]
    total = None
    for scale in scales:
        x = images if scale == 1.0 else F.interpolate(
            images, scale_factor=scale, mode="bilinear", align_corners=True
        )
        views = [x, x.flip(-1)] if flip else [x]
        for k, view in enumerate(views):
            _, logits = model(view)
            logits = logits.flip(-1) if k == 1 else logits
            probs = F.interpolate(logits, size=size, mode="bilinear", align_corners=True).softmax(dim=1)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], num_classes: int, device: torch.device,
    scales: Sequence[float] = (1.0,), flip: bool = False,
) -> ConfusionMatrix:
    """Confusion matrix of ``model`` (eval mode restored to the caller's mode) over ``batches``; all-reduced."""
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes)
    for images, labels in batches:
        probs = multiscale_probs(model, images.to(device), scales, flip)
        matrix.update(probs, labels)
    matrix.all_reduce(device)
    model.train(was_training)
    return matrix
