"""Lovász-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018, Alg. 1), the variant ProCA uses in its source
loss (spec §2.2): ``classes='present'``, ``per_image=False``, pixels labelled 255 ignored."""

from __future__ import annotations

import torch
from torch import Tensor

from procA.labels import IGNORE_LABEL


def lovasz_grad(sorted_foreground: Tensor) -> Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at errors sorted in decreasing order (Eq. 9)."""
    total = sorted_foreground.sum()
    intersection = total - sorted_foreground.cumsum(0)
    union = total + (1.0 - sorted_foreground).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax(probs: Tensor, labels: Tensor) -> Tensor:
    """Mean over classes present in ``labels`` of the Lovász hinge on ``|1[y=c] - p_c|``.

    probs: (N, C, H, W) softmax probabilities; labels: (N, H, W) with 255 = ignored.
    """
    num_classes = probs.shape[1]
    flat = probs.permute(0, 2, 3, 1).reshape(-1, num_classes)
    labels = labels.reshape(-1)
    valid = labels != IGNORE_LABEL
    flat, labels = flat[valid], labels[valid]
    losses = []
    for c in labels.unique().tolist():
        foreground = (labels == c).float()
        errors = (foreground - flat[:, c]).abs()
        errors_sorted, order = errors.sort(descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(foreground[order])))
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()
