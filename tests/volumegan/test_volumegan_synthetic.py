"""The tiny preset's procedural scenes (spec volumegan.md §8 "Data"): seeded factors in their ranges, the
generator's own cameras, ground-truth depth on the analytic surfaces, colours from the two hues, and a dataset
that ``common.data.ImageDataset`` reads and that is never left half-written."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch

import common.data.archive
from common.data import ImageDataset
from volumegan import rendering as R
from volumegan.synthetic import (
    BACKGROUND,
    SATURATION,
    SCENE_CAMERA,
    SHAPES,
    camera_rays,
    factors_path,
    load_scenes,
    make_scenes,
    render_scenes,
    scene_factors,
    scenes_dataset,
)


def _scene(shape: str, size: float = 0.4, aspect: float = 1.0, yaw: float = math.pi / 2,
           pitch: float = math.pi / 2) -> dict[str, np.ndarray]:
    return {"shape": np.array([SHAPES.index(shape)]), "size": np.array([size]), "aspect": np.array([aspect]),
            "frequency": np.array([3.0]), "hue_1": np.array([0.0]), "hue_2": np.array([0.5]),
            "yaw": np.array([yaw]), "pitch": np.array([pitch])}


def test_factors_are_seeded_and_in_their_ranges():
    factors = scene_factors(600, seed=1)
    assert set(factors) == {"shape", "size", "aspect", "frequency", "hue_1", "hue_2", "yaw", "pitch"}
    assert all(np.array_equal(factors[key], scene_factors(600, seed=1)[key]) for key in factors)
    assert not np.array_equal(factors["size"], scene_factors(600, seed=2)["size"])
    assert factors["shape"].dtype == np.int64 and set(factors["shape"]) == {0, 1, 2}
    assert 0.3 <= factors["size"].min() and factors["size"].max() <= 0.5
    assert 0.7 <= factors["aspect"].min() and factors["aspect"].max() <= 1.3
    assert 2 <= factors["frequency"].min() and factors["frequency"].max() <= 4
    hues = np.concatenate([factors["hue_1"], factors["hue_2"]])
    assert 0 <= hues.min() and hues.max() < 1
    yaw, pitch = factors["yaw"] - math.pi / 2, math.pi / 2 - factors["pitch"]  # spec: U(-0.7, 0.7), U(0, 0.25)
    assert -0.7 <= yaw.min() < -0.6 and 0.6 < yaw.max() <= 0.7
    assert 0 <= pitch.min() < 0.02 and 0.23 < pitch.max() <= 0.25


def test_the_data_prior_is_the_generators_uniform_prior():
    yaw, pitch = R.sample_camera(4000, SCENE_CAMERA, generator=torch.Generator().manual_seed(0))
    assert yaw.min() >= math.pi / 2 - 0.7 and yaw.max() <= math.pi / 2 + 0.7
    assert pitch.min() >= math.pi / 2 - 0.25 and pitch.max() <= math.pi / 2
    assert SCENE_CAMERA.fov == 30 and SCENE_CAMERA.radius == 2.7


def test_camera_rays_are_the_generators_rays():
    yaw, pitch = torch.tensor([[1.2], [2.0]]), torch.tensor([[1.4], [1.6]])
    rays = R.sample_rays(2, 8, SCENE_CAMERA.replace(perturb="none"), yaw, pitch)
    origins, directions = camera_rays(yaw[:, 0], pitch[:, 0], 8)
    assert torch.equal(origins, rays.origins[:, 0, 0]) and torch.equal(directions, rays.directions)


def test_renders_are_reproducible_and_mark_the_background():
    factors, scenes = make_scenes(24, resolution=16, seed=3)
    _, again = make_scenes(24, resolution=16, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(scenes, again))
    assert scenes.images.shape == (24, 3, 16, 16) and scenes.depth.shape == scenes.mask.shape == (24, 1, 16, 16)
    assert torch.equal(scenes.mask, torch.isfinite(scenes.depth))
    background = scenes.images.permute(0, 2, 3, 1)[~scenes.mask[:, 0]]
    assert torch.all(background == BACKGROUND)
    assert 0.15 < scenes.mask.float().mean() < 0.6 and scenes.images.min() >= 0 and scenes.images.max() <= 1
    reach = math.sqrt(2 * 0.5**2 + (0.5 * 1.3) ** 2)  # the farthest corner of the largest box
    assert (scenes.depth[scenes.mask] - 2.7).abs().max() < reach


@pytest.mark.parametrize("shape", SHAPES)
def test_centre_pixel_depth_from_the_front_is_radius_minus_size(shape):
    scene = render_scenes(_scene(shape, size=0.37, aspect=1.2), resolution=33)  # odd: a pixel on the optical axis
    assert scene.depth[0, 0, 16, 16].item() == pytest.approx(2.7 - 0.37, abs=1e-3)
    assert math.isinf(scene.depth[0, 0, 0, 0].item())


@pytest.mark.parametrize("shape", SHAPES)
def test_depth_puts_every_hit_on_the_analytic_surface(shape):
    factors = scene_factors(16, seed=5)
    factors["shape"][:] = SHAPES.index(shape)
    scenes = render_scenes(factors, resolution=24)
    origins, directions = camera_rays(factors["yaw"], factors["pitch"], 24)
    points = origins[:, None, None] + directions * scenes.depth[:, 0, ..., None]
    half = torch.tensor(np.stack([factors["size"], factors["size"] * factors["aspect"], factors["size"]], 1),
                        dtype=torch.float32)[:, None, None]
    q = points / half
    if shape == "ellipsoid":
        level = q.norm(dim=-1)
    elif shape == "box":
        level = q.abs().amax(dim=-1)
    else:
        level = torch.maximum(q[..., [0, 2]].norm(dim=-1), q[..., 1].abs())
    hits = scenes.mask[:, 0]
    assert (level[hits] - 1).abs().max() < 5e-3  # on the surface (level set 1 of the normalised shape)


def test_a_sphere_matches_the_analytic_ray_intersection():
    yaw, pitch, size = 2.1, 1.3, 0.45
    scene = render_scenes(_scene("ellipsoid", size=size, yaw=yaw, pitch=pitch), resolution=32)
    origins, directions = camera_rays(torch.tensor([yaw]), torch.tensor([pitch]), 32)
    b = (directions * origins[:, None, None]).sum(-1)[0]
    disc = b * b - (2.7**2 - size**2)
    hit = disc > 0
    t = -b - disc.clamp_min(0).sqrt()
    sure = disc.abs() > 0.01  # rays not grazing the silhouette
    assert torch.equal(scene.mask[0, 0][sure], hit[sure])
    assert (scene.depth[0, 0][hit & sure] - t[hit & sure]).abs().max() < 1e-3


def test_object_pixels_carry_the_two_hues_and_the_first_dominates():
    factors = scene_factors(40, seed=7)
    scenes = render_scenes(factors, resolution=32)
    first = second = 0
    for i in range(40):
        pixels = scenes.images[i].permute(1, 2, 0)[scenes.mask[i, 0]].double().numpy()
        hsv = np.array([colorsys.rgb_to_hsv(*p) for p in pixels])
        assert np.abs(hsv[:, 1] - SATURATION).max() < 1e-4  # Lambert shading scales value only
        dist = [np.minimum(np.abs(hsv[:, 0] - h) % 1, 1 - np.abs(hsv[:, 0] - h) % 1) for h in
                (factors["hue_1"][i], factors["hue_2"][i])]
        assert np.minimum(*dist).max() < 1e-4
        first, second = first + (dist[0] < dist[1]).sum(), second + (dist[1] < dist[0]).sum()
    assert 0.6 < first / (first + second) < 0.75  # hue_1 covers two thirds of each period (equal stripes: 0.50)


def test_dataset_is_an_image_dataset_with_factors_and_depth(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    path = scenes_dataset(num_images=20, resolution=16, seed=4)
    assert path.parent == tmp_path and factors_path(path).is_file()
    dataset = ImageDataset(path, resolution=16, use_labels=True)
    factors, scenes = make_scenes(20, resolution=16, seed=4)
    assert len(dataset) == 20 and np.array_equal(dataset.get_label(3).argmax(), factors["shape"][3])
    data = load_scenes(path)
    assert torch.equal(data.images, (scenes.images * 255).round().to(torch.uint8))  # PNGs are lossless
    assert torch.equal(data.depth, scenes.depth)
    assert all(np.array_equal(data.factors[key], factors[key]) for key in factors)
    stamp = path.stat().st_mtime_ns
    assert scenes_dataset(num_images=20, resolution=16, seed=4) == path and path.stat().st_mtime_ns == stamp  # reused
    factors_path(path).unlink()  # incomplete: both are made again
    scenes_dataset(num_images=20, resolution=16, seed=4)
    assert factors_path(path).is_file() and torch.equal(load_scenes(path).depth, scenes.depth)


def test_an_interrupted_dataset_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    encode = common.data.archive.encode_png
    calls = []

    def failing(image):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return encode(image)

    monkeypatch.setattr(common.data.archive, "encode_png", failing)
    with pytest.raises(KeyboardInterrupt):
        scenes_dataset(num_images=12, resolution=8)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(common.data.archive, "encode_png", encode)
    assert len(ImageDataset(scenes_dataset(num_images=12, resolution=8))) == 12
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npz", ".zip"]
