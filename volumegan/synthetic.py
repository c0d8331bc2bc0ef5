"""Offline data of the tiny preset: procedural single-object scenes rendered with a torch SDF sphere tracer
(spec volumegan.md §8 "Data").

One object at the origin: an ellipsoid, an axis-aligned box or a y-axis cylinder with half-extents (size, size *
aspect, size), size ~ U(0.3, 0.5), aspect ~ U(0.7, 1.3). Albedo: two random hues (HSV, saturation 0.8, value 0.95)
in vertical stripes along world x, ``frequency`` ~ U(2, 4) periods across the object's width 2 * size; ``hue_1``
covers two thirds of each period (where sin(pi * frequency * x / size) >= -1/2), ``hue_2`` the rest, so "the first
hue" is the dominant one, which a small CNN can read (with equal stripes it could not tell the two apart: held-out
hue error 0.10 turns after 3,000 steps, against 0.024 after 1,000). Lambert shading from a fixed world light with
ambient 0.3 (view-independent, so two views of one scene agree); background light grey 0.8; no anti-aliasing (one
ray per pixel, so the depth and the colour of a pixel belong to the same surface point). Camera:
:data:`SCENE_CAMERA` (radius 2.7, fov 30 degrees, looking at the origin, yaw = pi/2 + U(-0.7, 0.7), pitch = pi/2 -
U(0, 0.25)); its rays are made with ``volumegan.rendering``'s ``camera_position``, ``cam2world`` and
``pixel_directions`` exactly as ``sample_rays`` does, so a yaw here is the generator's yaw. The depth is the
distance along the unit ray (``Rendered.depth``'s meaning), ``inf`` on the background.

Factors are drawn with ``numpy.random.default_rng(seed)`` (:func:`scene_factors`); rendering is a deterministic
function of them and of the camera (:func:`render_scenes` renders given scenes from any view). :func:`scenes_dataset`
writes the images once under ``data/`` as a StyleGAN2-ADA zip (``common.data.ImageDataset`` reads it; labels = shape
ids) with the factors and depths in a ``.npz`` next to it (:func:`load_scenes` reads both). Cost on one core
(48 tracing steps, chunks of 128 scenes of one shape): 3,000 scenes at 32x32 render in 1.6 s (~1,900 images/s),
the dataset with PNG encoding in 3.3 s; 64x64 costs ~5x.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from common.data import ImageDataset, write_image_archive
from common.paths import data_dir
from volumegan.rendering import RaySettings, cam2world, camera_position, pixel_directions

SHAPES = ("ellipsoid", "box", "cylinder")

# The data's camera prior as the generator's settings (uniform: mean + std * U(-1, 1)); depth range and samples are
# the tiny model's (spec §8: 8 coarse + 8 fine samples in [1.7, 3.7]).
SCENE_CAMERA = RaySettings(fov=30.0, ray_start=1.7, ray_end=3.7, num_steps=8, radius=2.7, yaw_mean=math.pi / 2,
                           yaw_std=0.7, pitch_mean=math.pi / 2 - 0.125, pitch_std=0.125, distribution="uniform")
SIZE_RANGE = (0.3, 0.5)
ASPECT_RANGE = (0.7, 1.3)
FREQUENCY_RANGE = (2.0, 4.0)
SATURATION, VALUE = 0.8, 0.95
AMBIENT = 0.3
BACKGROUND = 0.8
LIGHT = (0.4, 0.7, 0.6)  # world direction towards the light (normalised below): front, above, right
TRACE_STEPS = 48
_HIT_TOLERANCE = 1e-3  # |SDF| at the last step below which a ray counts as a hit
_CHUNK = 128  # scenes traced together (one shape per chunk)


class SceneImages(NamedTuple):
    """Renders of N scenes: ``images`` (N, 3, H, W) float in [0, 1], ``depth`` (N, 1, H, W) distance along the unit
    ray (``inf`` on the background), ``mask`` (N, 1, H, W) bool, True on the object."""

    images: Tensor
    depth: Tensor
    mask: Tensor


class SceneData(NamedTuple):
    """A dataset written by :func:`scenes_dataset`: the images (N, 3, H, W) uint8 in the zip's (sorted) order, the
    :func:`scene_factors` and the ground-truth depth (N, 1, H, W) float32 (``inf`` on the background)."""

    images: Tensor
    factors: dict[str, np.ndarray]
    depth: Tensor


def scene_factors(num_scenes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The factors of ``num_scenes`` scenes (spec §8), all (N,) from ``numpy.random.default_rng(seed)``.

    ``shape`` int64 index into :data:`SHAPES`; ``size``, ``aspect``, ``frequency`` (stripe periods across the
    width); ``hue_1``, ``hue_2`` in [0, 1); ``yaw``, ``pitch`` in radians from :data:`SCENE_CAMERA`'s prior.
    """
    rng = np.random.default_rng(seed)
    n = num_scenes
    return {
        "shape": rng.integers(0, len(SHAPES), size=n).astype(np.int64),
        "size": rng.uniform(*SIZE_RANGE, size=n),
        "aspect": rng.uniform(*ASPECT_RANGE, size=n),
        "frequency": rng.uniform(*FREQUENCY_RANGE, size=n),
        "hue_1": rng.uniform(0.0, 1.0, size=n),
        "hue_2": rng.uniform(0.0, 1.0, size=n),
        "yaw": SCENE_CAMERA.yaw_mean + SCENE_CAMERA.yaw_std * rng.uniform(-1.0, 1.0, size=n),
        "pitch": SCENE_CAMERA.pitch_mean + SCENE_CAMERA.pitch_std * rng.uniform(-1.0, 1.0, size=n),
    }


def camera_rays(yaw: Tensor | np.ndarray, pitch: Tensor | np.ndarray, resolution: int, fov: float = SCENE_CAMERA.fov,
                radius: float = SCENE_CAMERA.radius) -> tuple[Tensor, Tensor]:
    """Camera centres (N, 3) and unit world ray directions (N, H, W, 3) of cameras at ``yaw``, ``pitch`` (N,),
    computed exactly as ``volumegan.rendering.sample_rays`` does."""
    yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1, 1)
    pitch = torch.as_tensor(pitch, dtype=torch.float32).reshape(-1, 1)
    matrix = cam2world(camera_position(yaw, pitch, radius))
    directions = torch.einsum("nij,hwj->nhwi", matrix[:, :3, :3], pixel_directions(resolution, fov))
    return matrix[:, :3, 3], directions


def _sdf(shape: str, p: Tensor, half: Tensor) -> Tensor:
    """Signed distance (M,) of points ``p`` (M, 3) to the shape with half-extents ``half`` (M, 3)."""
    if shape == "box":  # exact
        q = p.abs() - half
        return q.clamp_min(0).norm(dim=-1) + q.amax(dim=-1).clamp_max(0)
    if shape == "cylinder":  # exact, capped, axis y
        d = torch.stack([p[:, [0, 2]].norm(dim=-1) - half[:, 0], p[:, 1].abs() - half[:, 1]], dim=-1)
        return d.clamp_min(0).norm(dim=-1) + d.amax(dim=-1).clamp_max(0)
    # ellipsoid: the usual first-order bound k0 (k0 - 1) / k1 (exact on the surface and for spheres)
    k0 = (p / half).norm(dim=-1)
    k1 = (p / (half * half)).norm(dim=-1).clamp_min(1e-8)
    return k0 * (k0 - 1) / k1


def _hsv_to_rgb(hue: Tensor) -> Tensor:
    """(M,) hues in [0, 1) at :data:`SATURATION`, :data:`VALUE` -> (M, 3) RGB."""
    n = torch.tensor([5.0, 3.0, 1.0])
    k = (n + hue[:, None] * 6) % 6
    return VALUE - VALUE * SATURATION * torch.minimum(k, 4 - k).clamp(0, 1)


def _trace_chunk(shape: str, factors: dict[str, Tensor], origins: Tensor, directions: Tensor,
                 steps: int) -> tuple[Tensor, Tensor]:
    """Sphere-trace the rays (N, H, W, 3) of N scenes of one ``shape``: colours (N, H, W, 3), depth (N, H, W)."""
    n, h, w, _ = directions.shape
    half = torch.stack([factors["size"], factors["size"] * factors["aspect"], factors["size"]], dim=-1)
    half = half[:, None, None, :].expand(n, h, w, 3).reshape(-1, 3)
    o = origins[:, None, None, :].expand(n, h, w, 3).reshape(-1, 3)
    d = directions.reshape(-1, 3)
    colour = torch.full((n * h * w, 3), BACKGROUND)
    depth = torch.full((n * h * w,), math.inf)
    # start every ray where it enters the object's bounding box (slab test); rays that miss it are background
    t1, t2 = (-half - o) / d, (half - o) / d
    t_near, t_far = torch.minimum(t1, t2).amax(dim=-1), torch.maximum(t1, t2).amin(dim=-1)
    rays = torch.nonzero(t_near < t_far).squeeze(1)
    o, d, half, t_far = o[rays], d[rays], half[rays], t_far[rays]
    t = t_near[rays]
    for _ in range(steps):
        t = t + _sdf(shape, o + t[:, None] * d, half)
    points = o + t[:, None] * d
    hit = (_sdf(shape, points, half).abs() < _HIT_TOLERANCE) & (t < t_far + _HIT_TOLERANCE)
    rays, points, half, t = rays[hit], points[hit], half[hit], t[hit]
    # normals by central differences of the SDF; Lambert shading from the fixed world light
    eps = 1e-3
    offsets = torch.eye(3) * eps
    normal = torch.stack([_sdf(shape, points + offsets[i], half) - _sdf(shape, points - offsets[i], half)
                          for i in range(3)], dim=-1)
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    light = torch.tensor(LIGHT) / torch.tensor(LIGHT).norm()
    shading = AMBIENT + (1 - AMBIENT) * (normal @ light).clamp_min(0)
    scene = torch.div(rays, h * w, rounding_mode="floor")
    stripe = torch.sin(math.pi * factors["frequency"][scene] * points[:, 0] / factors["size"][scene]) >= -0.5
    hue = torch.where(stripe, factors["hue_1"][scene], factors["hue_2"][scene])
    colour[rays] = _hsv_to_rgb(hue) * shading[:, None]
    depth[rays] = t
    return colour.reshape(n, h, w, 3), depth.reshape(n, h, w)


def render_scenes(factors: dict[str, np.ndarray], yaw: Tensor | np.ndarray | None = None,
                  pitch: Tensor | np.ndarray | None = None, resolution: int = 32,
                  steps: int = TRACE_STEPS) -> SceneImages:
    """Render the scenes of ``factors`` (as :func:`scene_factors`) from their own cameras, or from ``yaw`` and
    ``pitch`` (N,) if given (the same scene from another view, spec §8 "Metrics" 1)."""
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    factor = {key: torch.as_tensor(np.asarray(value), dtype=torch.float32) for key, value in factors.items()}
    n = len(factor["shape"])
    yaw = factor["yaw"] if yaw is None else torch.as_tensor(yaw, dtype=torch.float32).reshape(n)
    pitch = factor["pitch"] if pitch is None else torch.as_tensor(pitch, dtype=torch.float32).reshape(n)
    images = torch.empty(n, resolution, resolution, 3)
    depth = torch.empty(n, resolution, resolution)
    shapes = factor["shape"].long()
    for shape_id, shape in enumerate(SHAPES):
        members = torch.nonzero(shapes == shape_id).squeeze(1)
        for chunk in members.split(_CHUNK):
            origins, directions = camera_rays(yaw[chunk], pitch[chunk], resolution)
            chunk_factors = {key: value[chunk] for key, value in factor.items()}
            images[chunk], depth[chunk] = _trace_chunk(shape, chunk_factors, origins, directions, steps)
    return SceneImages(images.permute(0, 3, 1, 2).contiguous(), depth[:, None], torch.isfinite(depth)[:, None])


def make_scenes(num_scenes: int, resolution: int = 32, seed: int = 0) -> tuple[dict[str, np.ndarray], SceneImages]:
    """``num_scenes`` procedural scenes: their :func:`scene_factors` and renders from their own cameras."""
    factors = scene_factors(num_scenes, seed)
    return factors, render_scenes(factors, resolution=resolution)


def _quantise(images: Tensor) -> Tensor:
    """(N, C, H, W) floats in [0, 1] -> uint8, rounded."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def factors_path(dataset: str | os.PathLike) -> Path:
    """The ``.npz`` of factors and depths that goes with the dataset zip ``dataset``."""
    return Path(dataset).with_suffix(".npz")


def scenes_dataset(num_images: int = 3000, resolution: int = 32, seed: int = 0) -> Path:
    """The scenes as a StyleGAN2-ADA zip (labels = shape ids) under ``data/``, with :func:`factors_path` next to it;
    generated once and reused while both files exist.

    Both are written to temporary names of this process and renamed at the end, the ``.npz`` first: an interrupted
    run leaves neither behind (or, killed between the two renames, only the ``.npz``, and the next call remakes
    both); concurrent writers write identical files and the last rename wins.
    """
    path = data_dir() / f"volumegan-scenes-r{resolution}-n{num_images}-s{seed}.zip"
    sidecar = factors_path(path)
    if path.is_file() and sidecar.is_file():
        return path
    factors, rendered = make_scenes(num_images, resolution, seed)
    tmp_zip = path.with_name(f"{path.name}.{os.getpid()}.tmp.zip")
    tmp_npz = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp.npz")
    try:
        write_image_archive(tmp_zip, _quantise(rendered.images).permute(0, 2, 3, 1).numpy(), factors["shape"].tolist())
        np.savez_compressed(tmp_npz, depth=rendered.depth.numpy(), **factors)
        os.replace(tmp_npz, sidecar)
        os.replace(tmp_zip, path)
    finally:
        tmp_npz.unlink(missing_ok=True)
        tmp_zip.unlink(missing_ok=True)
    return path


def load_scenes(path: str | os.PathLike) -> SceneData:
    """A dataset of :func:`scenes_dataset`: images (read with ``common.data.ImageDataset``), factors and depth."""
    dataset = ImageDataset(path)
    images = torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))
    with np.load(factors_path(path)) as stored:
        arrays = {key: stored[key] for key in stored.files}
    depth = torch.from_numpy(arrays.pop("depth"))
    if len(depth) != len(images):
        raise ValueError(f"{factors_path(path)} holds {len(depth)} scenes but {path} {len(images)} images; delete "
                         "both and regenerate them")
    return SceneData(images, arrays, depth)
