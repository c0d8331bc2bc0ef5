"""The tiny preset's 3D metrics (spec volumegan.md §8 "Metrics"): the reprojection error on ground-truth renders
(near 0 for consistent views, large for a wrong scene or a mirrored view, a valid fraction that follows the masks,
the tolerance and occlusion) and the factor CNN's API, cache and Fréchet distance. The oracle trains for a few steps
only here; its calibrated accuracy is in volumegan/metrics3d.py's docstring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from volumegan.metrics3d import (
    FactorNet,
    OracleConfig,
    feature_distance,
    load_oracle,
    oracle_features,
    oracle_path,
    predict,
    reprojection_calibration,
    reprojection_error,
    train_oracle,
    yaw_correlation,
)
from volumegan.synthetic import SHAPES, render_scenes, scene_factors

TINY_ORACLE = OracleConfig(num_images=48, resolution=32, held_out=16, steps=3, batch_size=8)


@pytest.fixture(scope="module")
def views():
    factors = scene_factors(24, seed=11)
    return factors, render_scenes(factors, resolution=32)


def _re(factors, view_a, yaw_delta: float, **kwargs):
    yaw_b = factors["yaw"] + yaw_delta
    view_b = render_scenes(factors, yaw_b, factors["pitch"], resolution=view_a.images.shape[-1])
    return reprojection_error(view_a.images, view_a.depth, view_b.images, view_b.depth, factors["yaw"],
                              factors["pitch"], yaw_b, factors["pitch"], view_a.mask, **kwargs)


def test_identical_views_reproject_exactly_onto_themselves(views):
    factors, view = views
    result = _re(factors, view, 0.0)
    assert result.error < 1e-5
    assert result.valid_fraction == pytest.approx(view.mask.float().mean().item(), abs=1e-6)  # every object pixel


def test_a_tiny_yaw_change_with_perfect_depth_has_near_zero_error(views):
    factors, view = views
    small, larger = _re(factors, view, 0.002), _re(factors, view, 0.3)
    assert small.error < 0.006 and small.valid_fraction > 0.8 * view.mask.float().mean()
    assert small.error < larger.error < 0.045


def test_wrong_scenes_and_mirrored_views_score_far_worse():
    results = reprojection_calibration(num_per_shape=16, seed=2)
    for shape in SHAPES:
        consistent, wrong, mirrored = (results[shape][k] for k in ("consistent", "wrong_scene", "mirrored"))
        assert consistent.error < 0.045 and consistent.valid_fraction > 0.15
        assert wrong.error > 4 * consistent.error and mirrored.error > 4 * consistent.error
        assert wrong.valid_fraction < consistent.valid_fraction  # other geometry: fewer points pass visibility


def test_a_coarse_depth_upsampled_gives_nearly_the_same_error():
    full = reprojection_calibration(num_per_shape=8, seed=3)
    coarse = reprojection_calibration(num_per_shape=8, seed=3, depth_resolution=16)
    for shape in SHAPES:
        assert abs(full[shape]["consistent"].error - coarse[shape]["consistent"].error) < 0.01
        assert 0.6 * full[shape]["consistent"].valid_fraction < coarse[shape]["consistent"].valid_fraction


def test_valid_fraction_follows_mask_tolerance_and_occlusion(views):
    factors, view = views
    loose, default, strict = (_re(factors, view, 0.3, tolerance=t).valid_fraction for t in (0.5, 0.05, 1e-4))
    assert strict < default <= loose <= view.mask.float().mean()
    none = reprojection_error(view.images, view.depth, view.images, view.depth, factors["yaw"], factors["pitch"],
                              factors["yaw"], factors["pitch"], torch.zeros_like(view.depth))
    assert none.valid_fraction == 0 and math.isnan(none.error)
    behind = _re(factors, view, math.pi)  # the opposite camera sees the back: the front is occluded
    assert behind.valid_fraction < 0.02
    # without opacity, the finite depths are the mask; a float opacity is thresholded at min_opacity
    same = reprojection_error(view.images, view.depth, view.images, view.depth, factors["yaw"], factors["pitch"],
                              factors["yaw"], factors["pitch"])
    half = reprojection_error(view.images, view.depth, view.images, view.depth, factors["yaw"], factors["pitch"],
                              factors["yaw"], factors["pitch"], 0.6 * view.mask.float(), min_opacity=0.7)
    assert same.valid_fraction == pytest.approx(view.mask.float().mean().item()) and half.valid_fraction == 0


def test_factor_net_shapes_and_features():
    net = FactorNet()
    logits, hue, yaw, features = net.factors(torch.zeros(5, 3, 32, 32))
    assert logits.shape == (5, 3) and hue.shape == (5, 2) and yaw.shape == (5,) and features.shape == (5, 128)
    assert 60_000 < sum(p.numel() for p in net.parameters()) < 200_000


def test_oracle_trains_reproducibly_caches_and_predicts(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    net, report = load_oracle(TINY_ORACLE)
    assert oracle_path(TINY_ORACLE).is_file() and set(report) == {"shape_accuracy", "yaw_r", "hue_error",
                                                                   "train_seconds"}
    stored = torch.load(oracle_path(TINY_ORACLE), map_location="cpu", weights_only=True)
    assert stored["config"]["steps"] == 3 and set(stored) == {"config", "state_dict", "report"}
    again, _ = train_oracle(TINY_ORACLE)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    cached, _ = load_oracle(TINY_ORACLE)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), cached.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_oracle(path=tmp_path / "missing.pt")

    factors = scene_factors(10, seed=9)
    images = render_scenes(factors, resolution=32).images * 2 - 1
    out = predict(net, images)
    assert out.shape.shape == (10,) and out.shape.dtype == torch.long and set(out.shape.tolist()) <= {0, 1, 2}
    assert out.hue.shape == (10,) and 0 <= out.hue.min() and out.hue.max() < 1
    assert out.yaw.shape == (10,) and out.features.shape == (10, 128)
    uint8 = ((images + 1) * 127.5).round().to(torch.uint8)
    assert torch.allclose(predict(net, uint8).features, out.features, atol=1e-3)  # uint8 and [-1, 1] agree
    big = render_scenes(factors, resolution=64).images * 2 - 1
    assert predict(net, big).features.shape == (10, 128)  # resized to the oracle's 32x32
    r = yaw_correlation(net, images, factors["yaw"])
    assert -1 <= r <= 1


def test_feature_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = FactorNet().eval()
    images = render_scenes(scene_factors(40, seed=1), resolution=32).images * 2 - 1
    features = oracle_features(net, images)
    assert features.shape == (40, 128) and features.dtype == np.float64
    assert abs(feature_distance(net, images, images)) < 1e-6
    assert feature_distance(net, images, images.flip(1)) > 1e-3  # RGB -> BGR: other colours, other features
