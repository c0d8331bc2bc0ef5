"""The downstream protocols (probes.py) and the tiny measurements (measure.py) on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data.synthetic import shape_factors
from ghfeat import probes
from ghfeat.encoder import GHFeatEncoder
from ghfeat.measure import labelled_shapes, recalibrate_bn


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 5)) * 0.1 + np.eye(3, 5)[y] * 3, y


def test_linear_probe_separates_separable_classes_and_chance_on_noise():
    (x, y), (tx, ty) = _blobs(300, 0), _blobs(200, 1)
    assert probes.linear_probe(x, y, tx, ty) == 1.0
    assert probes.linear_probe(x, y, tx, ty, kind="logistic") == 1.0
    noise = np.random.default_rng(2).standard_normal((200, 5))
    assert probes.linear_probe(x, y, noise, ty) < 0.5
    with pytest.raises(ValueError, match="ridge' or 'logistic"):
        probes.linear_probe(x, y, tx, ty, kind="svm")


def test_ridge_regression_recovers_a_linear_target():
    rng = np.random.default_rng(0)
    x, tx = rng.standard_normal((400, 6)), rng.standard_normal((100, 6))
    w = rng.standard_normal((6, 2))
    result = probes.ridge_regression(x, x @ w, tx, tx @ w, alpha=1e-6)
    assert result["r2"] > 0.9999 and result["mae"] < 1e-3


def test_retrieval_precision_at_k():
    gallery = np.array([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1])
    assert probes.retrieval(gallery, labels, gallery, labels, k=2) == 1.0  # itself and its neighbour
    assert probes.retrieval(gallery, labels, gallery, labels, k=4) == 0.5
    with pytest.raises(ValueError, match="k must be"):
        probes.retrieval(gallery, labels, gallery, labels, k=5)


def test_swap_groups_and_paste_edit():
    a, b = [torch.zeros(1, 2)] * 3, [torch.ones(1, 2)] * 3
    mixed = probes.swap_groups(a, b, ["fine"])
    assert [float(m.sum()) for m in mixed] == [0, 0, 2]
    pasted = probes.paste_edit(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8), (2, 3, 4, 2))
    assert pasted.sum() == 3 * 4 * 2 and pasted[0, 0, 2:6, 3:5].min() == 1


def test_foreground_centroid_and_hue_of_rendered_shapes_match_their_factors():
    images, labels, targets = labelled_shapes(200, seed=4, resolution=32)
    x = images.astype(np.float64) / 255
    masks = probes.foreground(x)
    centres = probes.centroids(masks) / 32 + 0.5 / 32  # pixel centres -> image units
    error = np.abs(centres - targets[:, :2]).max(axis=1)
    assert np.median(error) < 0.03  # the centroid of a triangle is not its circumcentre: a few px for some
    assert (probes.hue_class(x, masks) == labels["hue"]).mean() > 0.95


def test_labelled_shapes_follow_the_factors():
    images, labels, targets = labelled_shapes(50, seed=3)
    f = shape_factors(50, 3)
    assert images.shape == (50, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(labels["shape"], f["shape"])
    assert np.array_equal(labels["quadrant"], (f["center"][:, 0] > 0.5) + 2 * (f["center"][:, 1] > 0.5))
    assert np.array_equal(labels["size"], f["size"] > 0.26) and np.allclose(targets[:, 2], f["size"])


def test_recalibrated_BN_holds_the_statistics_of_the_images_and_keeps_the_weights():
    torch.manual_seed(0)
    E = GHFeatEncoder(filters=[8, 8, 8, 8], units=[1, 1, 1], bottleneck=False, stem_stride=1, extra_channels=8,
                      fpn_channels=8, resolution=32, group_dims=(4, 4, 4))
    weights = {k: v.clone() for k, v in E.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = np.random.default_rng(0).integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    recalibrate_bn(E, images, batch=40)
    x = torch.from_numpy(images).float() / 127.5 - 1
    stem = E.stem_conv(x)
    torch.testing.assert_close(E.stem_bn.running_mean, stem.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not E.training and all(torch.equal(E.state_dict()[k], v) for k, v in weights.items())
    assert E.stem_bn.momentum == 0.1
