"""The tiny preset's 3D metrics (spec volumegan.md §8 "Metrics"): the reprojection error on ground-truth renders
(near 0 for consistent views, large for a wrong scene or a mirrored view, a valid fraction that follows the masks,
the tolerance and occlusion), the factor CNN's API, cache and Fréchet distance, and the pose and depth errors (closed
forms with stub estimators; the depth net's API and cache). The oracle and the depth net train for a few steps only
here; their calibrated accuracy is in volumegan/metrics3d.py's docstring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from volumegan.metrics3d import (
    CONSTANT_POSE_ERROR,
    DepthNet,
    DepthNetConfig,
    FactorNet,
    OracleConfig,
    depth_calibration,
    depth_error,
    depth_net_path,
    feature_distance,
    load_depth_net,
    load_oracle,
    oracle_features,
    oracle_path,
    pose_error,
    predict,
    predict_depth,
    reprojection_calibration,
    reprojection_error,
    train_depth_net,
    train_oracle,
    yaw_correlation,
)
from volumegan.synthetic import SCENE_CAMERA, SHAPES, SceneData, render_scenes, scene_factors

TINY_ORACLE = OracleConfig(num_images=48, resolution=32, held_out=16, steps=3, batch_size=8)
TINY_DEPTH = DepthNetConfig(num_images=48, held_out=16, steps=3, batch_size=8)


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


class YawStub(nn.Module):
    """An oracle whose yaw is the first pixel of the image's red channel, normalised as FactorNet's yaw head."""

    def factors(self, x):
        n = len(x)
        return torch.zeros(n, 3), torch.ones(n, 2), x[:, 0, 0, 0], torch.zeros(n, 128)


def _yaw_images(yaws: torch.Tensor) -> torch.Tensor:
    images = torch.zeros(len(yaws), 3, 32, 32)
    images[:, 0, 0, 0] = (yaws - SCENE_CAMERA.yaw_mean) / SCENE_CAMERA.yaw_std
    return images


def test_pose_error_is_zero_for_the_commanded_yaws_and_counts_degrees():
    yaws = torch.tensor([1.0, 1.3, 1.6, 2.0, 2.2])
    assert pose_error(YawStub(), _yaw_images(yaws), yaws) < 1e-4
    offsets = torch.tensor([0.1, -0.1, 0.2, -0.05, 0.0])  # mean |offset| 0.09 rad
    assert pose_error(YawStub(), _yaw_images(yaws + offsets), yaws.numpy()) == pytest.approx(0.09 * 180 / math.pi,
                                                                                             rel=1e-4)
    # the scale: always the prior's mean yaw, on a fine uniform grid of U(pi/2 - 0.7, pi/2 + 0.7)
    grid = torch.linspace(-0.7, 0.7, 20_001, dtype=torch.float64) + math.pi / 2
    assert CONSTANT_POSE_ERROR == pytest.approx(20.0535, abs=1e-4)
    constant = torch.zeros(len(grid), 3, 1, 1)  # resized to 32x32 of zeros: the mean yaw
    assert pose_error(YawStub(), constant, grid) == pytest.approx(CONSTANT_POSE_ERROR, rel=1e-3)


class FixedDepth(nn.Module):
    """A depth net that predicts ``depth`` (N, 1, 32, 32) and the foreground ``mask`` whatever the images."""

    def __init__(self, depth: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.depth, self.logit = depth, torch.where(mask, 10.0, -10.0)

    def forward(self, x):
        return self.depth, self.logit


def test_depth_error_is_zero_for_the_predicted_depth_even_through_the_upsampling():
    images = torch.zeros(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    mask[:, :, 8:20, 4:30] = True
    ramp = 2.2 + 0.5 * torch.linspace(0, 1, 32)  # linear in x: corner-aligned bilinear upsampling is exact
    predicted = ramp.expand(2, 1, 32, 32)
    out = depth_error(FixedDepth(predicted, mask), images, predicted)
    assert out == {"de": 0.0, "de_valid": pytest.approx(12 * 26 / 1024)}
    coarse = (2.2 + 0.5 * torch.linspace(0, 1, 16)).expand(2, 1, 16, 16)  # a 16x16 NeRF depth
    assert depth_error(FixedDepth(predicted, mask), images, coarse)["de"] < 1e-12


def test_depth_error_matches_a_hand_computed_mse_on_a_partial_foreground():
    predicted = torch.full((1, 1, 32, 32), 2.5)
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[:, :, :4] = True  # the net's foreground: rows 0-3
    depth = torch.full((1, 1, 32, 32), 9.9)  # outside the foreground: not scored
    depth[:, :, :2] = 2.6  # error 0.1
    depth[:, :, 2] = 2.3  # error 0.2
    depth[:, :, 3] = math.inf  # ground-truth background under the net's foreground: not scored
    out = depth_error(FixedDepth(predicted, mask), torch.zeros(1, 3, 32, 32), depth)
    assert out["de"] == pytest.approx((64 * 0.1**2 + 32 * 0.2**2) / 96, rel=1e-5)
    assert out["de_valid"] == 96 / 1024
    nothing = depth_error(FixedDepth(predicted, torch.zeros_like(mask)), torch.zeros(1, 3, 32, 32), depth)
    assert math.isnan(nothing["de"]) and nothing["de_valid"] == 0


def test_depth_calibration_is_zero_for_a_perfect_net_and_orders_the_wrong_depths():
    factors = scene_factors(12, seed=5)
    scenes = render_scenes(factors, resolution=32)
    data = SceneData((scenes.images * 255).round().to(torch.uint8), factors, scenes.depth)
    perfect = FixedDepth(torch.where(scenes.mask, scenes.depth, torch.tensor(SCENE_CAMERA.ray_end)), scenes.mask)
    rows = depth_calibration(perfect, data, count=12)
    assert rows["ground_truth"] == {"de": 0.0, "de_valid": pytest.approx(scenes.mask.float().mean().item())}
    assert rows["wrong_scene"]["de_valid"] < rows["ground_truth"]["de_valid"]  # scored where both are foreground
    assert rows["wrong_scene"]["de"] > 1e-3 and rows["flat"]["de"] > 1e-3
    assert rows["ground_truth_16"]["de"] > rows["flat"]["de"]  # silhouettes mixed with the far plane


def test_depth_net_shapes():
    depth, logit = DepthNet()(torch.zeros(5, 3, 32, 32))
    assert depth.shape == logit.shape == (5, 1, 32, 32)
    assert sum(p.numel() for p in DepthNet().parameters()) == 77_034


def test_depth_net_trains_reproducibly_caches_and_predicts(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    net, report = load_depth_net(TINY_DEPTH)
    assert depth_net_path(TINY_DEPTH).is_file() and depth_net_path(TINY_DEPTH).name.startswith("volumegan-depthnet-")
    assert set(report) == {"depth_rmse", "depth_mae", "foreground_iou", "train_seconds"}
    stored = torch.load(depth_net_path(TINY_DEPTH), map_location="cpu", weights_only=True)
    assert stored["config"]["steps"] == 3 and set(stored) == {"config", "state_dict", "report"}
    again, _ = train_depth_net(TINY_DEPTH)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    cached, _ = load_depth_net(TINY_DEPTH)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), cached.state_dict().values()))
    assert depth_net_path(TINY_DEPTH) != depth_net_path(DepthNetConfig(num_images=48, held_out=16, steps=4,
                                                                       batch_size=8))
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_depth_net(path=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="held_out"):
        train_depth_net(DepthNetConfig(num_images=48, held_out=48))

    images = render_scenes(scene_factors(4, seed=9), resolution=64).images * 2 - 1  # resized to 32x32
    out = predict_depth(net, images)
    assert out.depth.shape == out.foreground.shape == (4, 1, 32, 32)
    assert 0 <= out.foreground.min() and out.foreground.max() <= 1
