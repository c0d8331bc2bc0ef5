"""Prototype update rule, contrastive loss, pseudo-label mask and Lovász-softmax against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from procA.contrast import PrototypeEstimator, confident_pseudo_labels, labels_at, pixels, prototype_contrast_loss
from procA.lovasz import lovasz_softmax


def test_cumulative_prototypes_match_hand_computation():
    est = PrototypeEstimator(num_classes=3, dim=2)
    est.update(torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]]), torch.tensor([0, 0, 1, 255]))
    assert est.proto.tolist() == [[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]  # ignore pixel dropped, class 2 absent
    assert est.amount.tolist() == [2.0, 1.0, 0.0]
    est.update(torch.tensor([[5.0, 0.0], [0.0, 4.0], [0.0, 8.0]]), torch.tensor([0, 1, 1]))
    # running mean of everything fed: class 0 (1+3+5)/3, class 1 (2+4+8)/3; class 2 still untouched
    assert est.proto[0].tolist() == pytest.approx([3.0, 0.0])
    assert est.proto[1].tolist() == pytest.approx([0.0, 14.0 / 3.0])
    assert est.proto[2].tolist() == [0.0, 0.0]
    assert est.amount.tolist() == [3.0, 3.0, 0.0]


def test_cumulative_prototypes_equal_exact_mean_of_all_pixels():
    torch.manual_seed(0)
    est = PrototypeEstimator(num_classes=4, dim=8)
    batches = [(torch.randn(n, 8), torch.randint(0, 4, (n,))) for n in (100, 300, 7)]
    for v, y in batches:
        est.update(v, y)
    v = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    for c in range(4):
        assert torch.allclose(est.proto[c], v[y == c].mean(0), atol=1e-5)
    assert est.amount.sum().item() == 407


def test_ema_prototypes():
    est = PrototypeEstimator(num_classes=2, dim=1, update="ema", momentum=0.9)
    est.update(torch.tensor([[2.0], [4.0]]), torch.tensor([0, 0]))
    assert est.proto[0].item() == pytest.approx(3.0)  # first sight of a class takes its batch mean
    est.update(torch.tensor([[13.0]]), torch.tensor([0]))
    assert est.proto[0].item() == pytest.approx(0.9 * 3.0 + 0.1 * 13.0)
    assert est.proto[1].item() == 0.0


def test_contrast_loss_closed_form_and_temperature():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    f = torch.tensor([[2.0, 0.0], [7.0, 7.0]])  # second pixel ignored
    y = torch.tensor([0, 255])
    loss = prototype_contrast_loss(f, y, protos, tau=1.0)  # cosines 1, 0, -1; positive = own prototype
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 1.0 + 1.0 / math.e)), rel=1e-6)
    loss50 = prototype_contrast_loss(f, y, protos, tau=50.0)  # official: tau DIVIDES -> logits 0.02, 0, -0.02
    expected = -math.log(math.exp(0.02) / (math.exp(0.02) + 1.0 + math.exp(-0.02)))
    assert loss50.item() == pytest.approx(expected, rel=1e-6)
    assert loss50.item() == pytest.approx(math.log(3), abs=0.03)


def test_contrast_loss_is_cross_entropy_of_cosines_and_detaches_prototypes():
    torch.manual_seed(0)
    protos = torch.randn(19, 64, requires_grad=True)
    y = torch.randint(0, 19, (500,))
    y[:50] = 255
    f = (protos.detach()[y.clamp(max=18)] + torch.randn(500, 64)).requires_grad_()
    loss = prototype_contrast_loss(f, y, protos, tau=0.5)
    ref = F.cross_entropy(F.normalize(f[50:], dim=1) @ F.normalize(protos[:], dim=1).t() / 0.5, y[50:])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    loss.backward()
    assert protos.grad is None and f.grad[:50].abs().sum() == 0 and f.grad[50:].abs().sum() > 0


def test_contrast_loss_with_no_valid_pixel_is_zero():
    f = torch.randn(3, 4, requires_grad=True)
    assert prototype_contrast_loss(f, torch.full((3,), 255), torch.randn(2, 4), 50.0).item() == 0.0


def test_pixels_and_labels_at_keep_the_same_order():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).reshape(2, 3, 2, 2)
    flat = pixels(maps)
    assert flat.shape == (8, 3) and flat[5].tolist() == maps[1, :, 0, 1].tolist()
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]])
    assert labels_at(labels, (2, 2)).tolist() == [[[0, 1], [2, 3]]]


def test_target_mask_thresholds_raw_logits():
    logits = torch.tensor([[0.5, 0.2], [0.95, 0.1], [0.3, 2.0]])[:, :, None, None].permute(2, 1, 0, 3)  # (1,2,3,1)
    assert confident_pseudo_labels(logits, 0.9, "logits")[0, :, 0].tolist() == [255, 0, 1]
    # softmax probabilities: 0.574, 0.700, 0.846 -> all below 0.9
    assert confident_pseudo_labels(logits, 0.9, "prob")[0, :, 0].tolist() == [255, 255, 255]


def test_lovasz_softmax_hand_computation():
    probs = torch.tensor([[0.8, 0.4], [0.2, 0.6]])[None, :, None, :]  # (1, 2 classes, 1, 2 pixels)
    labels = torch.tensor([[[0, 1]]])
    # class 0: errors (0.2, 0.4) -> 0.4*0.5 + 0.2*0.5; class 1: errors (0.2, 0.4) -> 0.4*1 + 0.2*0
    assert lovasz_softmax(probs, labels).item() == pytest.approx((0.3 + 0.4) / 2)
    assert lovasz_softmax(probs, torch.tensor([[[0, 255]]])).item() == pytest.approx(0.2)
    perfect = F.one_hot(torch.tensor([[[0, 1]]]), 2).permute(0, 3, 1, 2).float()
    assert lovasz_softmax(perfect, labels).item() == 0.0
