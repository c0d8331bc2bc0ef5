"""Evaluation on the target val set (spec §5): one confusion matrix over the split -> per-class IoU and mIoU.

The order is the official one (jiangzhengkai/ProCA: test.py ``inference``/``multi_scale_inference``, and the
training-time ``run_test`` of train_*.py): the logits of every view are upsampled (bilinear, align_corners=True)
straight to the LABEL size (full resolution; test images are downscaled to ``test_size``), then soft-maxed; the
probabilities are averaged over the views and arg-maxed. ``scales=(1.0,), flip=False`` is the single-scale test
run during training; the official test.py (whose numbers the paper reports) averages scales {0.5, ..., 1.75} of the
test-size input (each resized to ``(int(H s), int(W s))``, bilinear, align_corners=True) and their horizontal flips.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.metrics.segmentation import ConfusionMatrix


@torch.no_grad()
def multiscale_probs(model: nn.Module, images: Tensor, scales: Sequence[float], flip: bool,
                     size: tuple[int, int] | None = None) -> Tensor:
    """Mean softmax over ``scales`` (x {orig, h-flip}) at ``size`` (the label size; default the input size).

    Per view: logits upsampled to ``size``, then softmax (official order). Returns (N, C, *size).
    """
    height, width = images.shape[-2:]
    size = tuple(size) if size is not None else (height, width)
    total = None
    for scale in scales:
        x = F.interpolate(images, size=(int(height * scale), int(width * scale)), mode="bilinear", align_corners=True)
        views = [x, x.flip(-1)] if flip else [x]
        for k, view in enumerate(views):
            _, logits = model(view)
            probs = F.interpolate(logits, size=size, mode="bilinear", align_corners=True).softmax(dim=1)
            probs = probs.flip(-1) if k == 1 else probs
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
        probs = multiscale_probs(model, images.to(device), scales, flip, size=tuple(labels.shape[-2:]))
        matrix.update(probs.argmax(dim=1), labels)
    matrix.all_reduce(device)
    model.train(was_training)
    return matrix
