"""GH-Feat's losses (official ``training/loss_encoder.py``; weights from train_ghfeat.py, spec ghfeat.md §2.1).

    E:  L_E = mean((x_hat - x)^2) + feature_scale * mean((phi(x) - phi(x_hat))^2) + d_scale * mean(softplus(-D(x_hat)))
    D:  L_D = mean(softplus(D(x_hat))) + mean(softplus(-D(x))) + r1_gamma / 2 * mean(|d sum D(x) / dx|^2)

with x_hat = G(E(x)) through the frozen generator (constant noise), feature_scale 5e-5, d_scale 0.08 (train_ghfeat.py's
``--d_scale``; the functions' own default is 0.1), r1_gamma 10, R1 every iteration (no lazy regularisation).

phi is VGG16 conv4_3 after its ReLU (Keras ``block4_conv3``) on images nearest-resized to 256 px. The official Keras
weights take caffe-style input (BGR, mean-subtracted 0-255); the project's weight source is torchvision's ImageNet
VGG16 (``common.metrics.weights.load_vgg16_imagenet``), so :class:`VGGPerceptual` feeds it torchvision's
normalisation instead: same layer, other ImageNet training, so feature magnitudes (and the best feature_scale) may
differ from the official run. Offline (the tiny preset) phi is a frozen copy of the source D's block outputs
(:class:`DFeaturePerceptual`, spec §8: a D that is being fine-tuned drifts).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGPerceptual(nn.Module):
    """phi(x): torchvision VGG16 ``features[:23]`` (up to relu4_3) of RGB images in [-1, 1], nearest-resized to
    ``size`` (official ``perceptual_img_size`` 256, ``tf.image.resize_images(method=1)``). Frozen."""

    def __init__(self, vgg16: nn.Module, size: int = 256) -> None:
        super().__init__()
        self.features = vgg16.features[:23].eval().requires_grad_(False)
        self.size = size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> VGGPerceptual:
        super().train(mode)
        self.features.eval()  # always the fixed network
        return self

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="nearest")
        return self.features(((x + 1) / 2 - self.mean) / self.std)


class DFeaturePerceptual(nn.Module):
    """phi(x): a frozen copy of the source D's block outputs at ``levels``, flattened and concatenated (tiny)."""

    def __init__(self, D: nn.Module, levels: Sequence[str] = ("b32", "b16", "b8")) -> None:
        super().__init__()
        self.D = D.eval().requires_grad_(False)
        self.levels = tuple(levels)

    def train(self, mode: bool = True) -> DFeaturePerceptual:
        super().train(mode)
        self.D.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        _, feats = self.D(x, torch.zeros([len(x), 0], device=x.device), return_features=self.levels)
        return torch.cat([feats[name].flatten(1) for name in self.levels], dim=1)


def encoder_loss(reals: Tensor, fakes: Tensor, fake_logits: Tensor, perceptual: nn.Module,
                 feature_scale: float = 5e-5, d_scale: float = 0.08) -> dict[str, Tensor]:
    """``E_loss``: the total and its terms (``pixel``, ``feats``, ``adv``) for reals x and reconstructions x_hat."""
    pixel = (fakes - reals).square().mean()
    feats = feature_scale * (perceptual(reals) - perceptual(fakes)).square().mean()
    adv = d_scale * F.softplus(-fake_logits).mean()
    return {"loss": pixel + feats + adv, "pixel": pixel, "feats": feats, "adv": adv}


def discriminator_loss(D: nn.Module, reals: Tensor, fakes: Tensor, r1_gamma: float = 10.0) -> dict[str, Tensor]:
    """``D_logistic_simplegp``: logistic loss on reals and (detached) reconstructions plus R1 on the reals. With
    ``r1_gamma`` 0 (the steps between lazy R1 steps) the gradient penalty is not computed (no ``r1`` term)."""
    c = torch.zeros([len(reals), 0], device=reals.device)
    reals = reals.detach().requires_grad_(r1_gamma > 0)
    real_logits = D(reals, c)
    fake_logits = D(fakes.detach(), c)
    loss_fake, loss_real = F.softplus(fake_logits).mean(), F.softplus(-real_logits).mean()
    terms = {"loss": loss_fake + loss_real, "fake": loss_fake, "real": loss_real}
    if r1_gamma > 0:
        (grads,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
        terms["r1"] = grads.square().sum(dim=[1, 2, 3]).mean()
        terms["loss"] = terms["loss"] + terms["r1"] * (r1_gamma * 0.5)
    return terms
