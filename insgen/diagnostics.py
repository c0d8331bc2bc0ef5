"""Measurements of the tiny ablation (spec insgen.md §8): D over-fitting gap, instance retrieval, class coverage.

- :func:`discriminator_gap`: mean D logit on the training reals minus on held-out reals (ADA paper Fig. 1's
  over-fitting diagnostic). InsGen's stated purpose is to reduce D over-fitting, so this is the primary figure.
- :func:`instance_retrieval_top1`: two augmented views of each image; top-1 = fraction whose nearest neighbour
  (cosine, D's pooled last-block features) among the other views is its own view.
- :class:`DigitClassifier` / :func:`class_entropy`: entropy of the digit-class histogram of generated images under a
  logistic regression fitted on scikit-learn's 8x8 digits (max ln 10 = 2.303); a mode-collapse guard.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from insgen.contrastive import HEAD_FEATURES


@torch.no_grad()
def discriminator_logits(D: nn.Module, images: Tensor, batch: int = 20) -> Tensor:
    """D's logits [N] on un-augmented images in [-1, 1] (batches divisible by the mbstd group)."""
    chunks = images.split(batch)
    return torch.cat([D(x, torch.zeros([len(x), 0], device=x.device)).flatten() for x in chunks])


@torch.no_grad()
def discriminator_gap(D: nn.Module, train_images: Tensor, heldout_images: Tensor, batch: int = 20) -> float:
    """mean D(train reals) - mean D(held-out reals); positive when D scores what it trained on higher."""
    train_mean = discriminator_logits(D, train_images, batch).mean()
    return float(train_mean - discriminator_logits(D, heldout_images, batch).mean())


@torch.no_grad()
def instance_retrieval_top1(D: nn.Module, images: Tensor, augment: nn.Module, batch: int = 20) -> float:
    """Top-1 accuracy of matching A(x) to A'(x) among all images' second views by D's pooled features."""
    feats = []
    for _ in range(2):
        out = []
        for x in images.split(batch):
            _, f = D(augment(x), torch.zeros([len(x), 0], device=x.device), return_features=[HEAD_FEATURES])
            out.append(F.normalize(f[HEAD_FEATURES].float().mean(dim=[2, 3]), dim=1))
        feats.append(torch.cat(out))
    nearest = (feats[0] @ feats[1].t()).argmax(dim=1)
    return float((nearest == torch.arange(len(images), device=images.device)).float().mean())


class DigitClassifier:
    """Logistic regression on all 1,797 scikit-learn 8x8 digits (deterministic, ships with scikit-learn)."""

    def __init__(self) -> None:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression

        bunch = load_digits()
        self.model = LogisticRegression(max_iter=2000).fit(bunch.data, bunch.target)

    def predict(self, images: Tensor) -> np.ndarray:
        """Classes of images [N, 1, H, W] in [-1, 1] (area-downsampled to 8x8, scaled to sklearn's 0..16)."""
        small = F.adaptive_avg_pool2d(images.float().clamp(-1, 1), 8)
        pixels = ((small + 1) * 8).flatten(1).cpu().numpy()
        return self.model.predict(pixels)


def class_entropy(classes: np.ndarray, num_classes: int = 10) -> float:
    """Entropy (nats) of the class histogram; ln(num_classes) when every class is equally frequent."""
    counts = np.bincount(classes, minlength=num_classes).astype(np.float64)
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * np.log(probs)).sum())


MAX_CLASS_ENTROPY = math.log(10)
