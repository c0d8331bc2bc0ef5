"""The limited-data measurements (common.stylegan2.probe) against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.config import ConfigError
from common.data import ImageDataset
from common.data.synthetic import digits_dataset
from common.stylegan2.probe import class_entropy, discriminator_gap, heldout_indices, instance_retrieval_top1


class MeanPixelD(torch.nn.Module):
    """logit = mean pixel; features 'b8' = the pixels as channels of a 1x1 map (views match themselves exactly)."""

    def feature_names(self) -> list[str]:
        return ["b8", "fc"]

    def forward(self, img, c, return_features=()):
        logits = img.mean(dim=[1, 2, 3])[:, None]
        return (logits, {"b8": img.flatten(1)[:, :, None, None]}) if return_features else logits


def test_gap_is_the_difference_of_mean_logits():
    train, held = torch.full([6, 1, 4, 4], 0.5), torch.full([10, 1, 4, 4], -0.25)
    assert discriminator_gap(MeanPixelD(), train, held, batch=4) == pytest.approx(0.75)


def test_retrieval_with_identical_views_is_perfect_and_with_noise_is_not():
    torch.manual_seed(0)
    images = torch.randn(12, 1, 4, 4)
    assert instance_retrieval_top1(MeanPixelD(), images, torch.nn.Identity(), batch=5) == 1.0
    shuffle = lambda x: x[torch.randperm(len(x))]  # noqa: E731 - views unrelated to their image
    assert instance_retrieval_top1(MeanPixelD(), images, shuffle, batch=12) < 0.5


def test_class_entropy_closed_forms():
    assert class_entropy(np.array([3, 3, 3]), 10) == 0.0
    assert class_entropy(np.arange(10), 10) == pytest.approx(math.log(10))
    assert class_entropy(np.array([0, 0, 1, 1]), 4) == pytest.approx(math.log(2))


def test_heldout_images_are_outside_the_training_subset_and_fixed(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    path = digits_dataset(resolution=8)
    full = ImageDataset(path)
    splits = []
    for seed in (0, 1):  # the global RNG (seeded per run) does not move the split
        np.random.seed(seed)
        train = ImageDataset(path, max_size=32, random_seed=0)
        held = heldout_indices(train, full, 300)
        assert len(held) == 300 and not set(held) & set(train.raw_indices.tolist())
        splits.append(held)
    assert np.array_equal(*splits)
    with pytest.raises(ConfigError, match="only 1765 of the 1797 are outside"):
        heldout_indices(ImageDataset(path, max_size=32, random_seed=0), full, 1800)


def test_the_probe_refuses_conditional_runs(tmp_path, monkeypatch):
    from common.stylegan2.probe import LimitedProbe

    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    labelled = ImageDataset(digits_dataset(resolution=8), use_labels=True, max_size=32)
    with pytest.raises(ConfigError, match="measures unconditional runs"):
        LimitedProbe(labelled, tmp_path, torch.device("cpu"), 300, 10)
