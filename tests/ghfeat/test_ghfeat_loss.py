"""GH-Feat's losses against their closed forms (official loss_encoder.py; spec ghfeat.md §2.1)."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan
from common.stylegan2.snapshot import load_networks
from ghfeat.loss import DFeaturePerceptual, VGGPerceptual, discriminator_loss, encoder_loss


class _QuadD(nn.Module):
    """D(x) = sum(w * x^2) per image: R1 has the closed form sum((2 w x)^2)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.3))

    def forward(self, x, c):
        return (self.w * x.square()).flatten(1).sum(1, keepdim=True)


def test_encoder_loss_terms_are_the_official_weights():
    reals, fakes = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    logits = torch.tensor([[0.0], [1.0]])
    terms = encoder_loss(reals, fakes, logits, perceptual=nn.Identity())  # phi = identity: feats = 5e-5 * 0.25
    assert terms["pixel"].item() == pytest.approx(0.25)
    assert terms["feats"].item() == pytest.approx(5e-5 * 0.25)
    expected_adv = 0.08 * (math.log(2) + math.log1p(math.exp(-1.0))) / 2  # d_scale 0.08 (train_ghfeat.py)
    assert terms["adv"].item() == pytest.approx(expected_adv, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(0.25 + 5e-5 * 0.25 + expected_adv, rel=1e-6)


def test_discriminator_loss_has_r1_every_step_with_gamma_10():
    D = _QuadD()
    reals, fakes = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    terms = discriminator_loss(D, reals, fakes)
    real_logits = (0.3 * reals.square()).flatten(1).sum(1)
    fake_logits = (0.3 * fakes.square()).flatten(1).sum(1)
    r1 = (2 * 0.3 * reals).square().flatten(1).sum(1).mean()
    expected = torch.nn.functional.softplus(fake_logits).mean() + torch.nn.functional.softplus(-real_logits).mean()
    assert terms["r1"].item() == pytest.approx(r1.item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx((expected + 5.0 * r1).item(), rel=1e-6)
    terms["loss"].backward()
    assert D.w.grad is not None  # R1 is differentiable w.r.t. D (create_graph)


def test_vgg_perceptual_is_relu4_3_at_256px_and_frozen():
    phi = VGGPerceptual(torchvision.models.vgg16(weights=None))  # architecture only: no download in tests
    with torch.no_grad():
        out = phi(torch.zeros(1, 3, 128, 128))  # nearest-resized to 256 first, as the official loss
    assert out.shape == (1, 512, 32, 32) and isinstance(phi.features[-1], nn.ReLU)
    assert not any(p.requires_grad for p in phi.parameters())
    assert not phi.train().features.training


def test_d_feature_perceptual_uses_a_frozen_copy_of_the_source_d():
    D = load_networks(pretrained_source_gan(SourceTraining(total_kimg=0.032))).D
    phi = DFeaturePerceptual(D)
    x = torch.zeros(2, 3, 32, 32, requires_grad=True)
    out = phi(x)
    assert out.shape == (2, 64 * 16 * 16 + 64 * 8 * 8 + 64 * 4 * 4)
    assert not any(p.requires_grad for p in phi.parameters())
    out.sum().backward()
    assert x.grad is not None  # gradients reach the reconstruction, never the frozen D


def test_between_lazy_r1_steps_the_penalty_is_not_computed():
    D = _QuadD()
    reals, fakes = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    lazy = discriminator_loss(D, reals, fakes, r1_gamma=0.0)
    full = discriminator_loss(D, reals, fakes, r1_gamma=10.0)
    assert "r1" not in lazy and lazy["loss"].item() == pytest.approx((full["fake"] + full["real"]).item())
