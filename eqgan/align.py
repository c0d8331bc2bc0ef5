"""EqGAN-SA's alignment of G's heatmaps with D's attention (Wang et al., CVPR 2022, Sec. 3.2, Eq. 4; official
``training/loss.py``: ``compute_GradCam_multi`` and the Gmain branch of ``accumulate_gradients``; spec §2.3-2.4).

Per G main step, for the levels k = b8, b16, b32 (D block outputs at 4x4, 8x8, 16x16):

    alpha_k  = spatial mean of d sum_i softplus(-D(x_i)) / d A_k        (Grad-CAM weights of D's "fake" evidence,
                                                                         on the detached fake; detached)
    A'_k     = sum_c ReLU(alpha_kc * A_kc)                              (ReLU per channel, THEN the sum: official)
    Ahat_k   = minmax(upsample_bilinear(A'_k, R))                       (min and max detached, per sample)
    H_k      = level-1 heatmap as drawn; levels 2-3: minmax(mean over centres)
    L_align  = sum_k lambda_k * mean{ e in |Ahat_k - H_k| : e > 0.25 }  (all e when at most one exceeds 0.25)

A_k comes from the D pass of G's adversarial loss, so L_align reaches G through D's features of the fake (D itself
is frozen in the G phase). The Grad-CAM gradients are taken with ``torch.autograd.grad`` on named D features
(``D(..., return_features=...)``) instead of the official module hooks. The disequilibrium indicator (spec §5) is
``common.stylegan2.evaluate.disequilibrium`` (a snapshot) and the method's per-tick ``Metrics/DI``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.stylegan2.loss import StyleGAN2Loss
from eqgan.spatial import LEVELS

ALIGN_THRES = 0.25
LEVEL_WEIGHTS = {"b8": 1.0, "b16": 1.0, "b32": 1.0}
CAM_FEATURES = {"b8": "b8", "b16": "b16", "b32": "b32"}  # level -> D feature (block outputs 4x4, 8x8, 16x16)


def gradcam_weights(D: nn.Module, img: Tensor, c: Tensor, levels: tuple[str, ...] = LEVELS) -> dict[str, Tensor]:
    """alpha_k = mean over pixels of d sum softplus(-D(img)) / dA_k, on a detached copy of ``img`` (B, C, 1, 1)."""
    img = img.detach().requires_grad_(True)
    logits, feats = D(img, c, return_features=[CAM_FEATURES[k] for k in levels])
    grads = torch.autograd.grad(F.softplus(-logits).sum(), [feats[CAM_FEATURES[k]] for k in levels])
    return {k: g.detach().mean(dim=(2, 3), keepdim=True) for k, g in zip(levels, grads)}


def minmax(x: Tensor) -> Tensor:
    """Per-sample (x - min) / (max - min) with min and max detached (official: max taken after the shift)."""
    shifted = x - x.amin(dim=(2, 3), keepdim=True).detach()
    return shifted / shifted.amax(dim=(2, 3), keepdim=True).detach()


def alignment_loss(
    features: Mapping[str, Tensor],
    weights: Mapping[str, Tensor],
    heatmap: Mapping[str, Tensor],
    resolution: int,
    thres: float = ALIGN_THRES,
    level_weights: Mapping[str, float] = LEVEL_WEIGHTS,
) -> tuple[Tensor, dict[str, Tensor]]:
    """(L_align, per-level terms) of the module docstring; ``features`` are D's maps A_k of the fakes."""
    terms = {}
    for level, alpha in weights.items():
        cam = F.relu(alpha * features[level]).sum(dim=1, keepdim=True)
        cam = F.interpolate(cam, (resolution, resolution), mode="bilinear", align_corners=True)
        cam = torch.nan_to_num(minmax(cam), posinf=1.0)
        target = heatmap[level]
        if target.shape[1] > 1:
            target = minmax(target.mean(dim=1, keepdim=True))
        error = (cam - target).abs()
        error = error[torch.isfinite(error)]
        hard = error[error > thres]
        terms[level] = hard.mean() if len(hard) > 1 else error.mean()
    total = sum(level_weights[level] * term for level, term in terms.items())
    return total, terms


class EqGANLoss(StyleGAN2Loss):
    """StyleGAN2 loss + L_align in Gmain (``align_loss``); D's objective is unchanged.

    ``align_loss=False`` is the official ``--align_loss=False`` without its crash (the term is 0).
    """

    def __init__(self, G: nn.Module, D: nn.Module, align_loss: bool = True, align_thres: float = ALIGN_THRES,
                 level_weights: Mapping[str, float] = LEVEL_WEIGHTS, levels: tuple[str, ...] = LEVELS,
                 **kwargs: Any) -> None:
        super().__init__(G, D, **kwargs)
        self.align_loss, self.align_thres, self.level_weights = align_loss, align_thres, dict(level_weights)
        self.levels = tuple(levels)

    def g_main(self, gen_z: Tensor, gen_c: Tensor) -> Tensor:
        if not self.align_loss:
            return super().g_main(gen_z, gen_c)
        (gen_img, heatmap), _ = self.run_G(gen_z, gen_c, return_heatmap=True)
        aug_img = self.augment_pipe(gen_img) if self.augment_pipe is not None else gen_img
        gen_logits, feats = self.D(aug_img, gen_c, return_features=[CAM_FEATURES[k] for k in self.levels])
        loss = F.softplus(-gen_logits).mean()
        self.stats["Loss/G/loss"] = loss.detach()
        self.stats["Loss/scores/fake_g"] = gen_logits.detach().mean()
        weights = gradcam_weights(self.D, aug_img, gen_c, self.levels)
        features = {k: feats[CAM_FEATURES[k]] for k in self.levels}
        align, terms = alignment_loss(features, weights, heatmap, aug_img.shape[-1], self.align_thres,
                                      self.level_weights)
        self.stats["Loss/G/align_loss"] = align.detach()
        for level, term in terms.items():
            self.stats[f"Loss/G/align_{level}"] = term.detach()
        return loss + align
