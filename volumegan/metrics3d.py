"""3D metrics of the tiny preset (spec volumegan.md §8 "Metrics"): the reprojection error, a factor CNN ("oracle")
trained on the procedural scenes of :mod:`volumegan.synthetic`, for pose control and a feature Fréchet distance,
and the pose and depth errors of the Carver benchmark against the scenes' ground truth. None needs downloaded
weights.

Reprojection error (§8 "Metrics" 1). For the same latent (or scene) rendered from view A and view B: back-project
every pixel of A along its ray by its expected depth (bilinearly upsampled if the depth is coarser, e.g. the 16x16
NeRF depth), keep the pixels whose opacity is > 0.5 (or a given mask), project the points into B with the same
pinhole model, sample B's image and depth there bilinearly, and keep the points B sees (|distance to camera B -
B's depth| < ``tolerance``, 0.05). RE = mean |A - warp(B)| over the kept pixels and channels, images in [0, 1];
the valid fraction = kept pixels / all pixels of A. Treat RE as undefined below ~10% valid pixels (spec). Where
B's depth marks background (``inf``, ground truth only: a generator's expected depth is finite everywhere), a point
whose bilinear footprint in B touches the background is not scored.

Calibration on the ground truth (:func:`reprojection_calibration`, ``python -m volumegan.metrics3d``: 128 scenes
per shape, seed 0, 32x32, view B = view A + 0.3 rad yaw, tolerance 0.05, exact depth and mask; RE / valid fraction):

    =========  ===============  ===============  ===============
    shape      consistent pair  wrong scene      mirrored view B
    =========  ===============  ===============  ===============
    ellipsoid  0.027 / 0.212    0.218 / 0.052    0.184 / 0.212
    box        0.031 / 0.408    0.231 / 0.103    0.182 / 0.190
    cylinder   0.028 / 0.319    0.211 / 0.085    0.196 / 0.319
    =========  ===============  ===============  ===============

With view A's depth and mask rendered at 16x16 (the tiny NeRF's) and upsampled: consistent 0.029 / 0.171,
0.032 / 0.344, 0.029 / 0.266; wrong scene 0.225, 0.232, 0.214; mirrored 0.183, 0.180, 0.191 (same order).
The spec's prototype measured 0.027-0.030 (consistent), 0.286-0.306 (wrong scene), 0.176-0.193 (mirrored).
Consistent pairs are not at 0 because bilinear resampling of aliased 32x32 stripes and silhouettes is not exact; the
error grows with the view change (32 scenes per shape: exactly 0 for identical views, 0.002-0.003 for 0.002 rad,
0.010-0.012 for 0.01 rad). "Wrong scene" here is another scene of the same shape (the batch rolled by one) seen
from the same view B; it is scored only where the two geometries agree (5-10% of the pixels, below the 10% at which
the spec calls RE undefined) and measures the colour difference of two random palettes, so it scales with the
palette's saturation: with saturation = value = 1 (these data use 0.8 / 0.95) it is 0.28-0.30, the spec's range,
while consistent pairs rise to 0.036-0.040 and mirrored ones to 0.21. The prototype's palette, stripe widths and
choice of wrong scene are not recorded, so only the ordering and the rough sizes carry over. A mirrored view B
fails because the stripe pattern is not symmetric about x = 0 (and neither is the light), and box silhouettes
change as well.

Oracle (§8 "Metrics" 2-4): :class:`FactorNet` (3 stride-2 convs 32/64/64, FC 128, heads: shape class, (cos, sin) of
``hue_1``, yaw) trained with Adam on the images of ``volumegan.synthetic.scenes_dataset`` (the GAN's training set),
the last 500 of its 3,000 images held out for its report. With :class:`OracleConfig`'s defaults (1,000 Adam steps,
batch 128, lr 2e-3: 18-21 CPU-s on one core, plus 3 s for the dataset) it reached held-out shape accuracy 0.996, yaw
Pearson r 0.987 and a mean ``hue_1`` error of 0.024 turns (400 steps at batch 64, lr 1e-3: 0.986 / 0.967 / 0.055
in 4 s). Its 128-d penultimate features give the project-internal "feature-FD" (only for relative
comparisons between runs scored with the same oracle weights).

Pose error and depth error (Carver; also EG3D, GRAM): there, a pretrained face-reconstruction network gives the
pseudo ground truth of a generated image; here both estimators are trained on the scenes' true factors and depth.
PE (:func:`pose_error`) = mean |oracle's yaw - commanded yaw| in degrees. On the 500 held-out scenes (true yaws) the
oracle's PE is 2.74 deg, the floor; predicting the prior's mean yaw scores E|U(-0.7, 0.7)| = 0.35 rad = 20.05 deg
(:data:`CONSTANT_POSE_ERROR`; 19.91 on those scenes), the scale. DE (:func:`depth_error`) = mean squared difference
between a generator's expected depth along the unit rays, upsampled to 32x32 as RE does, and :class:`DepthNet`'s
depth of the generated image, over the pixels the net calls foreground, in scene units^2 (not normalised: the
generator and the data share the camera, 2.7 from the origin). The expected depth is the official unnormalised sum
of weights x sample depths (opacity ~1: the last compositing delta is 1e10), so a ray without any density has depth
0 and counts as the geometry error it is.

:class:`DepthNet` (a U-Net of 3 stride-2 convs 16/32/64 to 4x4 and 3 transposed convs back to 32x32 with skips,
77,034 parameters; per-pixel depth and foreground logit) trains with Adam on the first 2,500 scenes against their
depth: L1 on the ground-truth foreground + BCE of the foreground (ground truth: finite depth). With
:class:`DepthNetConfig`'s defaults (1,000 steps, batch 64, lr 2e-3: 20-22 CPU-s on one core) the 500 held-out scenes
give depth RMSE 0.063 and MAE 0.038 on their foreground (whose depths span 1.98-3.23, sd 0.13) and foreground IoU
0.997 (3,000 steps: RMSE 0.053 in 71 s; channels 32/64/64: 0.056 in 46 s). Calibration on them
(:func:`depth_calibration`, ``python -m volumegan.metrics3d``; DE / scored pixel fraction): their own depth
0.0039 / 0.340, the floor (silhouette pixels, a fifth of the scored ones, give 60% of it: MSE 0.011 against 0.0020
inside); another scene's depth (the batch rolled by one, scored where both are foreground) 0.0193 / 0.253; a flat
depth, the mean foreground depth, 0.0143 / 0.341. A generator's depth is 16x16 here: the true depth rendered at
16x16 and upsampled scores 0.0034 / 0.0042 / 0.0080 / 0.0398 with the background at 2.7 / 2.4 / 3.0 / the far
plane 3.7 (the last is ``ground_truth_16``): the upsampling mixes object and background depth at the silhouettes,
so a generator's DE also reads where it puts its background.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.metrics import fid_from_features
from common.paths import data_dir
from common.threads import configure_threads
from volumegan.rendering import cam2world, camera_position
from volumegan.synthetic import (
    SCENE_CAMERA,
    SHAPES,
    SceneData,
    camera_rays,
    load_scenes,
    render_scenes,
    scene_factors,
    scenes_dataset,
)

# ---------------------------------------------------------------------------------------------------------------
# Reprojection error


class Reprojection(NamedTuple):
    """``error``: mean |A - warp(B)| over the valid pixels (nan if none); ``valid_fraction``: valid / all pixels."""

    error: float
    valid_fraction: float


def _angles(value: Tensor | float, n: int) -> Tensor:
    """(N, 1) angles from a scalar or N values."""
    angles = torch.as_tensor(value, dtype=torch.float32).reshape(-1, 1)
    return angles.expand(n, 1) if len(angles) == 1 else angles.reshape(n, 1)


def _upsample(x: Tensor, size: int) -> Tensor:
    """(N, C, h, w) -> (N, C, size, size), bilinear on the corner-aligned ray grid (``pixel_directions``)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


@torch.no_grad()
def reprojection_error(image_a: Tensor, depth_a: Tensor, image_b: Tensor, depth_b: Tensor,
                       yaw_a: Tensor | float, pitch_a: Tensor | float, yaw_b: Tensor | float, pitch_b: Tensor | float,
                       opacity_a: Tensor | None = None, min_opacity: float = 0.5, tolerance: float = 0.05,
                       fov: float = SCENE_CAMERA.fov, radius: float = SCENE_CAMERA.radius) -> Reprojection:
    """Reprojection error of view A against view B of the same scenes (spec §8 "Metrics" 1).

    image_a, image_b: (N, 3, H, W) in [0, 1]; depth_a, depth_b: (N, 1, h, w) distances along the unit rays of the
    ``volumegan.rendering`` cameras (any h; ``inf`` marks background); opacity_a: (N, 1, h, w) opacity or bool mask
    of A (pixels above ``min_opacity`` count; None: the pixels with a finite depth); yaw/pitch: (N,) or scalars.
    Depth and opacity of A are upsampled bilinearly to H x W (corner-aligned, as the ray grid); B's image and depth
    (any resolution) are sampled bilinearly.
    """
    n, _, size, _ = image_a.shape
    finite_a = torch.isfinite(depth_a)
    keep = finite_a.float() if opacity_a is None else opacity_a.float() * finite_a
    depth_a = _upsample(torch.where(finite_a, depth_a, torch.full_like(depth_a, radius)), size)
    keep = (_upsample(keep, size) > min_opacity) & (_upsample(finite_a.float(), size) > 1 - 1e-6)
    origin_a, rays_a = camera_rays(_angles(yaw_a, n), _angles(pitch_a, n), size, fov, radius)
    points = origin_a[:, None, None, :] + rays_a * depth_a.permute(0, 2, 3, 1)  # (N, H, W, 3)
    # project into B: camera coordinates = R^T (X - origin), pixel (x, y) = cot(fov / 2) (X_c, Y_c) / -Z_c
    matrix_b = cam2world(camera_position(_angles(yaw_b, n), _angles(pitch_b, n), radius))
    rotation_b, origin_b = matrix_b[:, :3, :3], matrix_b[:, :3, 3]
    relative = points - origin_b[:, None, None, :]
    camera = torch.einsum("nji,nhwj->nhwi", rotation_b, relative)
    in_front = camera[..., 2] < -1e-6
    cot = 1 / math.tan(math.radians(fov) / 2)
    x = cot * camera[..., 0] / (-camera[..., 2]).clamp_min(1e-6)
    y = cot * camera[..., 1] / (-camera[..., 2]).clamp_min(1e-6)
    grid = torch.stack([x, -y], dim=-1)  # grid_sample's y runs top to bottom, the ray grid's y from 1 to -1
    inside = in_front & (x.abs() <= 1 + 1e-5) & (y.abs() <= 1 + 1e-5)  # round-off at the border pixels
    warped = F.grid_sample(image_b, grid, mode="bilinear", padding_mode="border", align_corners=True)
    # background (inf) in B: a point whose bilinear footprint touches it is not scored (B's colour there is mixed
    # with the background); 1e-3 of slack for round-off (identical views land 1e-6 off the pixel centres)
    finite_b = torch.isfinite(depth_b)
    weight = F.grid_sample(finite_b.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
    sampled_depth = F.grid_sample(torch.where(finite_b, depth_b, torch.zeros_like(depth_b)), grid, mode="bilinear",
                                  padding_mode="border", align_corners=True)[:, 0] / weight.clamp_min(1e-6)
    visible = (weight > 1 - 1e-3) & ((relative.norm(dim=-1) - sampled_depth).abs() < tolerance)
    valid = keep[:, 0] & inside & visible
    count = int(valid.sum())
    if count == 0:
        return Reprojection(math.nan, 0.0)
    difference = (image_a - warped).abs().mean(dim=1)
    return Reprojection(float(difference[valid].mean()), count / valid.numel())


def reprojection_calibration(num_per_shape: int = 128, yaw_delta: float = 0.3, resolution: int = 32,
                             depth_resolution: int | None = None, seed: int = 0,
                             tolerance: float = 0.05) -> dict[str, dict[str, Reprojection]]:
    """RE of ground-truth renders (spec §8 "Metrics" 1 calibration), per shape: ``consistent`` (one scene, view A and
    view A + ``yaw_delta``), ``wrong_scene`` (view B of the next scene of the batch, same camera) and ``mirrored``
    (view B flipped horizontally, image and depth). The same :func:`scene_factors` for every shape. View A's depth
    and mask come from a render at ``depth_resolution`` (e.g. the NeRF's 16) if given, else at ``resolution``."""
    factors = scene_factors(num_per_shape, seed)
    yaw_b = torch.as_tensor(factors["yaw"], dtype=torch.float32) + yaw_delta
    pitch = torch.as_tensor(factors["pitch"], dtype=torch.float32)
    results = {}
    for shape_id, shape in enumerate(SHAPES):
        scenes = dict(factors, shape=np.full(num_per_shape, shape_id))
        others = {key: np.roll(value, 1) for key, value in scenes.items()}
        view_a = render_scenes(scenes, resolution=resolution)
        geometry_a = view_a if depth_resolution is None else render_scenes(scenes, resolution=depth_resolution)
        view_b = render_scenes(scenes, yaw_b, pitch, resolution)
        wrong = render_scenes(others, yaw_b, pitch, resolution)
        pairs = {"consistent": (view_b.images, view_b.depth), "wrong_scene": (wrong.images, wrong.depth),
                 "mirrored": (view_b.images.flip(-1), view_b.depth.flip(-1))}
        results[shape] = {name: reprojection_error(view_a.images, geometry_a.depth, image_b, depth_b, factors["yaw"],
                                                   pitch, yaw_b, pitch, geometry_a.mask, tolerance=tolerance)
                          for name, (image_b, depth_b) in pairs.items()}
    return results


# ---------------------------------------------------------------------------------------------------------------
# Factor CNN ("oracle")

ORACLE_RESOLUTION = 32
ORACLE_FEATURES = 128


@dataclass(frozen=True)
class OracleConfig:
    """Everything the oracle's weights depend on; its hash names the cached file."""

    num_images: int = 3000  # the scenes_dataset it trains on (the GAN's training set)
    resolution: int = 32
    data_seed: int = 0
    held_out: int = 500  # the dataset's last images, kept for the report
    steps: int = 1000
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    version: int = 1  # bump when FactorNet or the recipe changes


class FactorPrediction(NamedTuple):
    """Per image: ``shape`` (N,) class index into ``SHAPES``, ``hue`` (N,) of ``hue_1`` in [0, 1), ``yaw`` (N,)
    radians, ``features`` (N, 128) penultimate features (for a Fréchet distance)."""

    shape: Tensor
    hue: Tensor
    yaw: Tensor
    features: Tensor


class FactorNet(nn.Module):
    """(N, 3, 32, 32) in [-1, 1] -> 128-d features; ``heads`` maps ReLU(features) to 3 shape logits, (cos, sin) of
    2 pi hue_1 and the normalised yaw (yaw - pi/2) / 0.7 (spec §8 "Metrics" 2: 3 convs 32/64/64 + FC 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),  # 16x16
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # 8x8
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),  # 4x4
            nn.Flatten(),
        )
        self.fc = nn.Linear(64 * 4 * 4, ORACLE_FEATURES)
        self.heads = nn.Linear(ORACLE_FEATURES, len(SHAPES) + 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.trunk(x))

    def factors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Shape logits (N, 3), hue vector (N, 2), normalised yaw (N,) and the features (N, 128) of ``x``."""
        features = self(x)
        out = self.heads(F.relu(features))
        return out[:, :len(SHAPES)], out[:, len(SHAPES):-1], out[:, -1], features


def oracle_input(images: Tensor) -> Tensor:
    """uint8 images (N, 3, H, W), or floats in [-1, 1] (the generator's range) -> float (N, 3, 32, 32) in [-1, 1]
    (anti-aliased bilinear resize if needed)."""
    x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()
    if x.shape[-1] != ORACLE_RESOLUTION:
        x = F.interpolate(x, size=(ORACLE_RESOLUTION, ORACLE_RESOLUTION), mode="bilinear", align_corners=False,
                          antialias=True)
    return x


def _targets(factors: dict[str, np.ndarray]) -> tuple[Tensor, Tensor, Tensor]:
    hue = torch.as_tensor(factors["hue_1"], dtype=torch.float32) * 2 * math.pi
    yaw = (torch.as_tensor(factors["yaw"], dtype=torch.float32) - SCENE_CAMERA.yaw_mean) / SCENE_CAMERA.yaw_std
    return torch.as_tensor(factors["shape"]), torch.stack([hue.cos(), hue.sin()], dim=1), yaw


@torch.no_grad()
def predict(oracle: FactorNet, images: Tensor, batch_size: int = 256) -> FactorPrediction:
    """The oracle's factors of ``images`` (uint8, or floats in [-1, 1]; (N, 3, H, W)), in batches."""
    parts = []
    for batch in images.split(batch_size):
        logits, hue, yaw, features = oracle.factors(oracle_input(batch))
        turns = torch.atan2(hue[:, 1], hue[:, 0]) / (2 * math.pi) % 1.0
        parts.append((logits.argmax(dim=1), turns, yaw * SCENE_CAMERA.yaw_std + SCENE_CAMERA.yaw_mean, features))
    return FactorPrediction(*(torch.cat(column) for column in zip(*parts)))


def yaw_correlation(oracle: FactorNet, images: Tensor, yaws: Tensor | np.ndarray) -> float:
    """Pearson r of the commanded ``yaws`` (N,) and the oracle's yaw of ``images`` (spec §8 "Metrics" 3; a model
    that learned a mirrored world gives r < 0: report |r|)."""
    predicted = predict(oracle, images).yaw.double().numpy()
    return float(np.corrcoef(np.asarray(yaws, dtype=np.float64).reshape(-1), predicted)[0, 1])


def oracle_features(oracle: FactorNet, images: Tensor) -> np.ndarray:
    """(N, 128) float64 penultimate features of ``images``."""
    return predict(oracle, images).features.double().numpy()


def feature_distance(oracle: FactorNet, images_a: Tensor, images_b: Tensor) -> float:
    """Fréchet distance between the oracle features of two image sets (spec §8 "Metrics" 4, "feature-FID"; with
    ``common.metrics.fid_from_features``, biased covariance). Comparable only between runs using one oracle."""
    return fid_from_features(oracle_features(oracle, images_a), oracle_features(oracle, images_b))


def evaluate_oracle(oracle: FactorNet, images: Tensor, factors: dict[str, np.ndarray]) -> dict[str, float]:
    """``shape_accuracy``, ``yaw_r`` and ``hue_error`` (mean circular error of hue_1, in turns) on labelled images."""
    prediction = predict(oracle, images)
    turns = (prediction.hue.double().numpy() - factors["hue_1"]) % 1.0
    return {"shape_accuracy": float((prediction.shape.numpy() == factors["shape"]).mean()),
            "yaw_r": float(np.corrcoef(factors["yaw"], prediction.yaw.double().numpy())[0, 1]),
            "hue_error": float(np.minimum(turns, 1 - turns).mean())}


def _training_data(config: OracleConfig | DepthNetConfig, resolution: int) -> tuple[SceneData, int]:
    """The scenes dataset of ``config`` and the number of its first images trained on (the rest is held out)."""
    if not 0 < config.held_out < config.num_images:
        raise ValueError(f"held_out must be in (0, num_images), got {config.held_out} of {config.num_images}")
    data = load_scenes(scenes_dataset(config.num_images, resolution, config.data_seed))
    return data, config.num_images - config.held_out


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One intra-op thread (a fixed reduction order: seeded training is reproducible), restored afterwards."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)


def _seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``make()`` with its initialisation drawn from ``seed`` (torch's global RNG left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make()


def train_oracle(config: OracleConfig = OracleConfig()) -> tuple[FactorNet, dict[str, float]]:
    """Train :class:`FactorNet` with Adam on the scenes dataset of ``config`` (seeded init and batches, one CPU
    thread); returns it (eval mode, frozen) and its report on the held-out images (plus ``train_seconds``)."""
    data, split = _training_data(config, config.resolution)
    with _one_thread():
        x = oracle_input(data.images[:split])
        shape, hue, yaw = _targets({key: value[:split] for key, value in data.factors.items()})
        generator = torch.Generator().manual_seed(config.seed)
        net = _seeded(FactorNet, config.seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
        start = time.perf_counter()
        for _ in range(config.steps):
            idx = torch.randint(split, (config.batch_size,), generator=generator)
            logits, hue_pred, yaw_pred, _ = net.factors(x[idx])
            loss = F.cross_entropy(logits, shape[idx]) + F.mse_loss(hue_pred, hue[idx]) + F.mse_loss(yaw_pred, yaw[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        net = net.eval().requires_grad_(False)
        report = evaluate_oracle(net, data.images[split:], {key: value[split:] for key, value in data.factors.items()})
    return net, dict(report, train_seconds=seconds)


def _cache_path(kind: str, config: OracleConfig | DepthNetConfig) -> Path:
    """``<data_dir>/volumegan-<kind>-<hash of config>.pt``."""
    key = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    return data_dir() / f"volumegan-{kind}-{key}.pt"


def _load_or_train(kind: str, make: Callable[[], nn.Module], train: Callable[[Any], tuple[nn.Module, dict[str, float]]],
                   config: OracleConfig | DepthNetConfig,
                   path: str | os.PathLike | None) -> tuple[nn.Module, dict[str, float]]:
    """The net and its held-out report from ``path``, else from the cache of ``config``, else trained now and
    cached (a plain dict {config, state_dict, report}, loadable with ``torch.load(weights_only=True)``)."""
    file = Path(path) if path is not None else _cache_path(kind, config)
    if file.is_file():
        stored = torch.load(file, map_location="cpu", weights_only=True)
        net = make()
        net.load_state_dict(stored["state_dict"])
        return net.eval().requires_grad_(False), stored["report"]
    if path is not None:
        raise FileNotFoundError(f"{kind} weights {path} do not exist (omit the path to train them)")
    net, report = train(config)
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    torch.save({"config": dataclasses.asdict(config), "state_dict": net.state_dict(), "report": report}, tmp)
    os.replace(tmp, file)  # atomic: concurrent trainers write identical weights
    return net, report


def oracle_path(config: OracleConfig = OracleConfig()) -> Path:
    """``<data_dir>/volumegan-oracle-<hash of config>.pt``."""
    return _cache_path("oracle", config)


def load_oracle(config: OracleConfig = OracleConfig(),
                path: str | os.PathLike | None = None) -> tuple[FactorNet, dict[str, float]]:
    """The oracle and its held-out report from ``path``, else from the cache of ``config``, else trained now and
    cached (:func:`_load_or_train`)."""
    return _load_or_train("oracle", FactorNet, train_oracle, config, path)


# ---------------------------------------------------------------------------------------------------------------
# Pose error and depth error (Carver-style, against the tiny data's ground truth)

# PE of a constant prediction, the prior's mean yaw: E|U(-yaw_std, yaw_std)| = yaw_std / 2 = 0.35 rad
CONSTANT_POSE_ERROR = math.degrees(SCENE_CAMERA.yaw_std / 2)
DEPTH_RESOLUTION = 32


def pose_error(oracle: FactorNet, images: Tensor, yaws: Tensor | np.ndarray) -> float:
    """PE: mean |oracle's yaw of ``images`` - commanded ``yaws`` (N,)| in degrees (Carver's pose error, with the
    oracle trained on the scenes' true yaws as the pose estimator). Scale: :data:`CONSTANT_POSE_ERROR`."""
    predicted = predict(oracle, images).yaw.double()
    commanded = torch.as_tensor(np.asarray(yaws), dtype=torch.float64).reshape(-1)
    return math.degrees(float((predicted - commanded).abs().mean()))


@dataclass(frozen=True)
class DepthNetConfig:
    """Everything the depth net's weights depend on; its hash names the cached file."""

    num_images: int = 3000  # the 32x32 scenes_dataset it trains on (the GAN's training set)
    data_seed: int = 0
    held_out: int = 500  # the dataset's last images, kept for the report
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    version: int = 1  # bump when DepthNet or the recipe changes


class DepthNet(nn.Module):
    """(N, 3, 32, 32) in [-1, 1] -> depth along the unit rays (N, 1, 32, 32), scene units, and a foreground logit
    (N, 1, 32, 32). A small U-Net: 3 stride-2 convs 16/32/64 (3x3, ReLU) down to 4x4, 3 transposed convs 32/16/8
    (4x4, stride 2, ReLU) back to 32x32, the second and third fed the encoder's map of their input resolution, and a
    3x3 conv to 2 channels; depth = camera radius + channel 0."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1), nn.ReLU())
                                  for i, o in ((3, 16), (16, 32), (32, 64)))  # 16x16, 8x8, 4x4
        self.up = nn.ModuleList(nn.Sequential(nn.ConvTranspose2d(i, o, 4, stride=2, padding=1), nn.ReLU())
                                for i, o in ((64, 32), (32 + 32, 16), (16 + 16, 8)))  # 8x8, 16x16, 32x32
        self.head = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for layer in self.up[1:]:
            x = layer(torch.cat([x, skips.pop()], dim=1))
        out = self.head(x)
        return SCENE_CAMERA.radius + out[:, :1], out[:, 1:]


class DepthPrediction(NamedTuple):
    """Per pixel of the 32x32 grid: ``depth`` (N, 1, 32, 32) along the unit rays, ``foreground`` (N, 1, 32, 32)
    probability."""

    depth: Tensor
    foreground: Tensor


@torch.no_grad()
def predict_depth(depth_net: DepthNet, images: Tensor, batch_size: int = 256) -> DepthPrediction:
    """The depth net's depth and foreground of ``images`` (uint8, or floats in [-1, 1]; (N, 3, H, W), resized to
    32x32 as the oracle's input), in batches."""
    parts = [depth_net(oracle_input(batch)) for batch in images.split(batch_size)]
    return DepthPrediction(torch.cat([depth for depth, _ in parts]), torch.cat([logit for _, logit in parts]).sigmoid())


def depth_error(depth_net: DepthNet, images: Tensor, depth: Tensor) -> dict[str, float]:
    """DE (Carver's depth error, with the depth net trained on the scenes' true depth as the pseudo ground truth):
    ``de`` = mean squared difference, in scene units^2, between ``depth`` (N, 1, h, w) along the unit rays (a
    generator's expected depth, upsampled to 32x32 as RE does) and the depth net's depth of ``images``, over the
    pixels the net calls foreground (p > 0.5) where ``depth`` is finite (ground truth marks background ``inf``; a
    generator's depth is finite everywhere); ``de_valid`` = those pixels / all pixels (``de`` nan if none)."""
    prediction = predict_depth(depth_net, images)
    target = _upsample(depth.float(), DEPTH_RESOLUTION)
    scored = (prediction.foreground > 0.5) & torch.isfinite(target)
    count = int(scored.sum())
    de = float((target - prediction.depth)[scored].square().mean()) if count else math.nan
    return {"de": de, "de_valid": count / scored.numel()}


def evaluate_depth_net(depth_net: DepthNet, images: Tensor, depth: Tensor) -> dict[str, float]:
    """``depth_rmse`` and ``depth_mae`` (scene units) on the ground-truth foreground (finite ``depth``, (N, 1, 32,
    32)) and ``foreground_iou`` of the net's foreground (p > 0.5) and the ground truth's."""
    prediction = predict_depth(depth_net, images)
    truth = torch.isfinite(depth)
    error = (prediction.depth - depth)[truth]
    predicted = prediction.foreground > 0.5
    return {"depth_rmse": float(error.square().mean().sqrt()), "depth_mae": float(error.abs().mean()),
            "foreground_iou": float((predicted & truth).sum() / (predicted | truth).sum())}


def depth_calibration(depth_net: DepthNet, data: SceneData, count: int = 500) -> dict[str, dict[str, float]]:
    """:func:`depth_error` of the last ``count`` scenes of ``data`` with their own ground-truth depth at 32x32
    (``ground_truth``: the floor) and at 16x16, the tiny NeRF's, upsampled with the background at the far plane
    ``ray_end`` (``ground_truth_16``), with the depth of the next scene of the batch (``wrong_scene``, scored where
    both are foreground) and with the mean foreground depth everywhere (``flat``)."""
    images, depth = data.images[-count:], data.depth[-count:]
    factors = {key: value[-count:] for key, value in data.factors.items()}
    coarse = render_scenes(factors, resolution=16).depth
    far = torch.full_like(coarse, SCENE_CAMERA.ray_end)
    depths = {"ground_truth": depth, "ground_truth_16": torch.where(torch.isfinite(coarse), coarse, far),
              "wrong_scene": depth.roll(1, dims=0),
              "flat": torch.full_like(depth, float(depth[torch.isfinite(depth)].mean()))}
    return {name: depth_error(depth_net, images, value) for name, value in depths.items()}


def _depth_loss(net: DepthNet, x: Tensor, depth: Tensor) -> Tensor:
    """L1 of the depth on the ground-truth foreground + BCE of the foreground logit (ground truth: finite depth)."""
    predicted, logit = net(x)
    foreground = torch.isfinite(depth)
    target = torch.where(foreground, depth, torch.zeros_like(depth))
    return (predicted - target).abs()[foreground].mean() + F.binary_cross_entropy_with_logits(logit, foreground.float())


def train_depth_net(config: DepthNetConfig = DepthNetConfig()) -> tuple[DepthNet, dict[str, float]]:
    """Train :class:`DepthNet` with Adam on the 32x32 scenes dataset of ``config`` against its ground-truth depth
    (seeded init and batches, one CPU thread); returns it (eval mode, frozen) and its report on the held-out images
    (:func:`evaluate_depth_net`, plus ``train_seconds``)."""
    data, split = _training_data(config, DEPTH_RESOLUTION)
    with _one_thread():
        x, depth = oracle_input(data.images[:split]), data.depth[:split]
        generator = torch.Generator().manual_seed(config.seed)
        net = _seeded(DepthNet, config.seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
        start = time.perf_counter()
        for _ in range(config.steps):
            idx = torch.randint(split, (config.batch_size,), generator=generator)
            loss = _depth_loss(net, x[idx], depth[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        net = net.eval().requires_grad_(False)
        report = evaluate_depth_net(net, data.images[split:], data.depth[split:])
    return net, dict(report, train_seconds=seconds)


def depth_net_path(config: DepthNetConfig = DepthNetConfig()) -> Path:
    """``<data_dir>/volumegan-depthnet-<hash of config>.pt``."""
    return _cache_path("depthnet", config)


def load_depth_net(config: DepthNetConfig = DepthNetConfig(),
                   path: str | os.PathLike | None = None) -> tuple[DepthNet, dict[str, float]]:
    """The depth net and its held-out report from ``path``, else from the cache of ``config``, else trained now and
    cached (:func:`_load_or_train`)."""
    return _load_or_train("depthnet", DepthNet, train_depth_net, config, path)


def main() -> None:
    """``python -m volumegan.metrics3d``: the RE calibration on the ground truth, the oracle's and the depth net's
    held-out reports and the PE / DE calibration on the held-out scenes (training and caching the nets, and the
    dataset they need, on first use)."""
    configure_threads()
    for depth_resolution in (None, 16):
        print(f"RE calibration, 128 scenes per shape, yaw +0.3, depth at {depth_resolution or 32}x"
              f"{depth_resolution or 32} (RE / valid fraction):")
        for shape, rows in reprojection_calibration(depth_resolution=depth_resolution).items():
            print(f"  {shape:9s} " + "  ".join(f"{name} {row.error:.3f} / {row.valid_fraction:.3f}"
                                               for name, row in rows.items()))
    oracle, report = load_oracle()
    print(f"oracle {oracle_path()}: held-out shape accuracy {report['shape_accuracy']:.3f}, yaw r "
          f"{report['yaw_r']:.3f}, hue_1 error {report['hue_error']:.3f} turns, trained in "
          f"{report['train_seconds']:.0f} s")
    depth_net, report = load_depth_net()
    print(f"depth net {depth_net_path()}: held-out depth RMSE {report['depth_rmse']:.4f}, MAE "
          f"{report['depth_mae']:.4f} (foreground pixels), foreground IoU {report['foreground_iou']:.4f}, trained in "
          f"{report['train_seconds']:.0f} s")
    data = load_scenes(scenes_dataset())
    held_out = OracleConfig().held_out
    yaws = data.factors["yaw"][-held_out:]
    print(f"PE calibration, {held_out} held-out scenes: oracle {pose_error(oracle, data.images[-held_out:], yaws):.2f}"
          f" deg; constant prediction of the prior's mean yaw {CONSTANT_POSE_ERROR:.2f} deg (on these scenes "
          f"{math.degrees(np.abs(yaws - SCENE_CAMERA.yaw_mean).mean()):.2f})")
    print(f"DE calibration, {DepthNetConfig().held_out} held-out scenes (DE / scored pixels): " + ", ".join(
        f"{name} {row['de']:.4f} / {row['de_valid']:.3f}"
        for name, row in depth_calibration(depth_net, data, DepthNetConfig().held_out).items()))


if __name__ == "__main__":
    main()
