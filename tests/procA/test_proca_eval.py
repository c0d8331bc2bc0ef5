"""Pseudo-label thresholds, the multi-scale + flip test, poly LR and the official defaults (spec §2.4, §5, §9)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.config import load_config
from procA.config import ProCAConfig
from procA.evaluate import evaluate, multiscale_probs
from procA.pseudo_label import class_thresholds
from procA.training import poly_lr


def test_class_thresholds_percentile_and_cap():
    confidence = [np.linspace(0.1, 1.0, 10)[::-1], np.array([0.97, 0.95]), np.zeros(0)]
    # ascending values of class 0: position round(10 * 0.6) = 6 -> 0.7; class 1: position 1 -> 0.97, capped at 0.9
    assert class_thresholds(confidence, 3, 0.6, 0.9).tolist() == pytest.approx([0.7, 0.9, 0.0])


class _Identity(nn.Module):
    """'Segmenter' whose logits are the first two input channels (equivariant to flips and scales)."""

    def forward(self, x):
        return x, x[:, :2]


def test_multiscale_flip_average_of_an_equivariant_model_is_its_softmax():
    x = torch.randn(1, 3, 8, 8)
    probs = multiscale_probs(_Identity(), x, scales=(1.0,), flip=True)
    assert torch.allclose(probs, x[:, :2].softmax(dim=1), atol=1e-6)
    smooth = torch.linspace(0, 1, 8).expand(1, 3, 8, 8).contiguous()
    two = multiscale_probs(_Identity(), smooth, scales=(0.5, 1.0), flip=True)
    assert two.shape == (1, 2, 8, 8) and torch.allclose(two.sum(1), torch.ones(1, 8, 8))


def test_evaluate_counts_confusion_over_the_whole_set():
    images = torch.zeros(2, 3, 2, 2)
    images[:, 1] = 1.0  # class 1 everywhere
    labels = torch.tensor([[[1, 1], [0, 255]], [[1, 0], [0, 0]]])
    matrix = evaluate(_Identity(), [(images, labels)], 2, torch.device("cpu"))
    assert matrix.hist.tolist() == [[0, 4], [0, 3]]


def test_poly_lr_and_official_defaults():
    assert poly_lr(5e-4, 20000, 31250, 0.9) == pytest.approx(1.99e-4, rel=5e-3)
    cfg = ProCAConfig()
    assert (cfg.contrast.tau, cfg.contrast.delta, cfg.contrast.target_mask_on) == (50.0, 0.9, "logits")
    assert (cfg.contrast.lambda_feat, cfg.contrast.lambda_out, cfg.source_only.lambda_lov) == (1.0, 1.0, 0.75)
    assert (cfg.source_only.iters, cfg.source_only.max_iters, cfg.proca.lr, cfg.proca.batch_size) == (
        20000, 31250, 2.5e-4, 4)
    assert cfg.pseudo_label.threshold_percent == 0.6 and cfg.model.blocks == (3, 4, 23, 3)


def test_paper_configs_load_with_the_official_values():
    configs = Path(__file__).resolve().parents[2] / "procA" / "configs"
    gta5 = load_config(ProCAConfig, configs / "gta5.yaml")
    synthia = load_config(ProCAConfig, configs / "synthia.yaml")
    assert (gta5.model.num_classes, gta5.data.source_size, gta5.proca.iters) == (19, (1280, 720), 90000)
    assert (synthia.model.num_classes, synthia.data.source, synthia.data.source_size) == (16, "synthia", (1280, 760))
    assert synthia.contrast == gta5.contrast and synthia.eval.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


class _StrideTwo(nn.Module):
    """A seeded 3-class segmenter at output stride 2: its views disagree, so the order of upsampling, softmax and
    averaging shows in the arg-max."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        feats = F.avg_pool2d(x, 2)
        return feats, 8 * self.conv(feats)


def _official_probs(model, images, label_size, scales, flip):
    """jiangzhengkai/ProCA test.py ``multi_scale_inference``: every view's logits upsampled straight to the label
    size, soft-maxed, flipped views flipped back, mean over scales x flips."""
    h, w = images.shape[-2:]
    total = 0
    for s in scales:
        x = F.interpolate(images, size=(int(h * s), int(w * s)), mode="bilinear", align_corners=True)
        up = F.interpolate(model(x)[1], size=label_size, mode="bilinear", align_corners=True)
        total = total + up.softmax(dim=1)
        if flip:
            up = F.interpolate(model(x.flip(3))[1], size=label_size, mode="bilinear", align_corners=True)
            total = total + up.softmax(dim=1).flip(3)
    return total / (len(scales) * (2 if flip else 1))


@pytest.mark.parametrize(("scales", "flip"), [((1.0,), False), ((0.5, 1.0, 1.5), True)])
def test_evaluation_upsamples_logits_to_the_label_size_then_softmaxes(scales, flip):
    model = _StrideTwo().eval()
    images = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    label_size = (13, 17)  # full-resolution labels, larger than the test-size input
    with torch.no_grad():
        reference = _official_probs(model, images, label_size, scales, flip)
    probs = multiscale_probs(model, images, scales, flip, size=label_size)
    assert probs.shape == (1, 3, 13, 17) and torch.allclose(probs, reference, atol=1e-6)
    labels = reference.argmax(dim=1)
    labels[0, 0, :5] = 255
    matrix = evaluate(model, [(images, labels)], 3, torch.device("cpu"), scales, flip)
    # the official arg-max everywhere (upsampling probabilities of the input-size views moves 5 / 18 pixels here)
    assert np.trace(matrix.hist) == matrix.hist.sum() == 13 * 17 - 5
