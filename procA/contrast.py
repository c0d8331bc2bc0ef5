"""The idea of ProCA: class prototypes updated on the fly and a prototype-contrastive loss (spec §2.2-2.3).

- :class:`PrototypeEstimator` keeps ``proto`` (C, A) and ``amount`` (C); the default update is the cumulative mean
  of every pixel ever fed (official ``prototype_dist_estimator.py``, USE_MOMENTUM False):
  ``w_c = n_c / (n_c + amount_c)``, ``proto_c <- (1 - w_c) proto_c + w_c mean_c``, ``amount_c += n_c``.
- :func:`prototype_contrast_loss` is the C-way InfoNCE against all prototypes with the official temperature
  semantics, cosine similarity DIVIDED by tau (tau = 50 in the official config, spec §7.1):
  ``L = mean_i -log softmax_k(cos(f_i, P_k) / tau)[y_i]``.
- :func:`confident_pseudo_labels` is the official on-the-fly target labelling: argmax of the raw logits, ignored
  where the max raw logit (not a probability, spec §7.2) is below ``delta`` = 0.9.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from procA.labels import IGNORE_LABEL

ProtoUpdate = Literal["cumulative", "ema"]
MaskOn = Literal["logits", "prob"]


class PrototypeEstimator:
    """Per-class prototypes of ``dim``-d vectors (features or logits) and the pixel count behind each."""

    def __init__(
        self, num_classes: int, dim: int, update: ProtoUpdate = "cumulative", momentum: float = 0.9,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_classes = num_classes
        self.update_rule = update
        self.momentum = momentum
        self.proto = torch.zeros(num_classes, dim, device=device)
        self.amount = torch.zeros(num_classes, device=device)

    @torch.no_grad()
    def update(self, vectors: Tensor, labels: Tensor) -> None:
        """Fold in pixels ``vectors`` (N, A) with ``labels`` (N,); labels equal to 255 are skipped.

        ``cumulative``: exact running mean over everything seen (a class absent from the batch is unchanged).
        ``ema``: ``proto_c <- m proto_c + (1 - m) mean_c`` for present classes (the official momentum branch weights
        the NEW batch by m and counts all pixels into every class, spec §7.10; this is the evident intent).
        """
        valid = labels != IGNORE_LABEL
        vectors, labels = vectors[valid].detach().float(), labels[valid].long()
        counts = torch.bincount(labels, minlength=self.num_classes).to(self.amount)
        sums = torch.zeros_like(self.proto).index_add_(0, labels, vectors.to(self.proto))
        present = counts > 0
        means = sums[present] / counts[present, None]
        if self.update_rule == "cumulative":
            weight = (counts[present] / (counts[present] + self.amount[present]))[:, None]
        else:
            weight = torch.where(self.amount[present] > 0, 1.0 - self.momentum, 1.0)[:, None]
        self.proto[present] = (1.0 - weight) * self.proto[present] + weight * means
        self.amount += counts

    def state_dict(self) -> dict[str, Tensor]:
        """The official file format: ``{'Proto': (C, A), 'Amount': (C,)}``."""
        return {"Proto": self.proto.clone(), "Amount": self.amount.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if tuple(state["Proto"].shape) != tuple(self.proto.shape):
            raise ValueError(f"prototypes of shape {tuple(state['Proto'].shape)}, expected {tuple(self.proto.shape)}")
        self.proto.copy_(state["Proto"])
        self.amount.copy_(state["Amount"])


def prototype_contrast_loss(vectors: Tensor, labels: Tensor, prototypes: Tensor, tau: float) -> Tensor:
    """ProCA's contrastive loss (official ``PrototypeContrastiveLoss``): cross-entropy over the C cosine similarities
    between each pixel and every prototype, divided by ``tau``; the own-class prototype is the positive.

    vectors: (N, A) pixels; labels: (N,) with 255 = ignored; prototypes: (C, A), treated as constants.
    Returns 0 (with a graph) when no pixel is valid.
    """
    valid = labels != IGNORE_LABEL
    if not bool(valid.any()):
        return vectors.sum() * 0.0
    logits = F.normalize(vectors[valid], dim=1) @ F.normalize(prototypes.detach(), dim=1).t() / tau
    return F.cross_entropy(logits, labels[valid].long())


def pixels(maps: Tensor) -> Tensor:
    """(N, A, h, w) -> (N*h*w, A), the pixel order of ``labels.reshape(-1)`` for (N, h, w) labels."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def labels_at(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Labels (N, H, W) nearest-resized to the feature grid ``size`` (ỹ_s of spec §2.2)."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


@torch.no_grad()
def confident_pseudo_labels(logits: Tensor, delta: float = 0.9, mask_on: MaskOn = "logits") -> Tensor:
    """ŷ_t: argmax of ``logits`` (N, C, h, w); 255 where the max raw logit (``mask_on='logits'``, official) or the
    max softmax probability (``'prob'``) is below ``delta``."""
    scores = logits if mask_on == "logits" else logits.softmax(dim=1)
    confidence, labels = scores.max(dim=1)
    return torch.where(confidence < delta, torch.full_like(labels, IGNORE_LABEL), labels)
