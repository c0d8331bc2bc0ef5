"""Cameras, rays, point sampling, feature-volume lookup and volume rendering of VolumeGAN (spec volumegan.md
§2.1 steps 5, 6, 9, 10; official ``models/rendering/points_sampling.py``, ``hierarchicle_sampling.py``,
``renderer.py``, ``utils.py``).

Conventions of the official sampler (spec §9):

- camera on a sphere of radius ``radius`` around the origin, looking at it, up = +y:
  position = r (sin(pitch) cos(yaw), cos(pitch), sin(pitch) sin(yaw)); pitch clamped to (1e-5, pi - 1e-5);
- pixel grid: x = linspace(-1, 1, W) left to right, y = linspace(1, -1, H) top to bottom, z = -1 / tan(fov / 2),
  directions normalised; cam2world columns (-left, up, -forward), left = normalize(up x forward);
- ``depths`` are distances along the unit ray from the camera (``pts_z`` officially), ``num_steps`` of them
  evenly in [ray_start, ray_end], each jittered in [-step/2, step/2] ('jitter', the official default
  ``perturb_mode=None``), not at all ('none', evaluation), or uniformly between bin mid-points ('mid').

Per-call settings never change the defaults: a :class:`RaySettings` is frozen and a call's overrides make a new
one (the official ``PointsSampling.__call__`` / ``Renderer.__call__`` write every keyword into the object, so one
call's ``perturb_mode='none'`` silently stays for every later call; spec §7).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

# the official hard-coded feature-volume box of the FFHQ config (models/volumegan_generator.py)
FFHQ_BOUNDS = ((-0.1886, -0.1671, -0.1956), (0.1887, 0.1692, 0.1872))


@dataclass(frozen=True)
class RaySettings:
    """The camera prior and the coarse samples of a dataset (official ``ps_cfg``; FFHQ defaults)."""

    fov: float = 12.0  # degrees
    ray_start: float = 0.8
    ray_end: float = 1.2
    num_steps: int = 12  # coarse samples per ray (as many importance samples follow)
    radius: float = 1.0
    yaw_mean: float = math.pi / 2  # 'horizontal'
    yaw_std: float = 0.3  # gaussian: standard deviation; uniform: half-width
    pitch_mean: float = math.pi / 2  # 'vertical'
    pitch_std: float = 0.155
    distribution: Literal["gaussian", "uniform"] = "gaussian"
    perturb: Literal["jitter", "none", "mid"] = "jitter"

    def replace(self, **overrides: object) -> RaySettings:
        """A copy with ``overrides`` (this object stays as it is)."""
        return dataclasses.replace(self, **overrides)


class Rays(NamedTuple):
    """Samples along every pixel's ray, world coordinates: points (N, H, W, S, 3), depths (N, H, W, S, 1),
    origins and directions (N, H, W, 3), the camera's yaw and pitch (N, 1)."""

    points: Tensor
    depths: Tensor
    origins: Tensor
    directions: Tensor
    yaw: Tensor
    pitch: Tensor


class Rendered(NamedTuple):
    """Volume rendering of one ray batch: the accumulated values (N, H, W, C), the expected depth (N, H, W, 1),
    the per-sample weights (N, H, W, S, 1) and the opacity = sum of weights (N, H, W, 1)."""

    values: Tensor
    depth: Tensor
    weights: Tensor
    opacity: Tensor


def sample_camera(batch: int, settings: RaySettings, device: torch.device | str = "cpu",
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(yaw, pitch), each (N, 1), from the prior (``sample_cam_positions``: gaussian = mean + std N(0, 1), uniform
    = mean + std U(-1, 1)); pitch clamped to (1e-5, pi - 1e-5)."""
    if settings.distribution == "gaussian":
        yaw = torch.randn(batch, 1, device=device, generator=generator) * settings.yaw_std + settings.yaw_mean
        pitch = torch.randn(batch, 1, device=device, generator=generator) * settings.pitch_std + settings.pitch_mean
    elif settings.distribution == "uniform":
        yaw = (torch.rand(batch, 1, device=device, generator=generator) - 0.5) * 2 * settings.yaw_std \
            + settings.yaw_mean
        pitch = (torch.rand(batch, 1, device=device, generator=generator) - 0.5) * 2 * settings.pitch_std \
            + settings.pitch_mean
    else:
        raise ValueError(f"unknown camera distribution {settings.distribution!r}; use 'gaussian' or 'uniform'")
    return yaw, pitch.clamp(1e-5, math.pi - 1e-5)


def camera_position(yaw: Tensor, pitch: Tensor, radius: float) -> Tensor:
    """(N, 3) camera centres on the sphere of ``radius``."""
    return radius * torch.cat([pitch.sin() * yaw.cos(), pitch.cos(), pitch.sin() * yaw.sin()], dim=1)


def cam2world(position: Tensor) -> Tensor:
    """(N, 4, 4) camera-to-world matrices of cameras at ``position`` (N, 3) looking at the origin, up = +y."""
    forward = F.normalize(-position, dim=-1)
    up = torch.tensor([0.0, 1.0, 0.0], device=position.device).expand_as(forward)
    left = F.normalize(torch.cross(up, forward, dim=-1), dim=-1)
    up = F.normalize(torch.cross(forward, left, dim=-1), dim=-1)
    matrix = torch.eye(4, device=position.device).repeat(len(position), 1, 1)
    matrix[:, :3, :3] = torch.stack([-left, up, -forward], dim=-1)
    matrix[:, :3, 3] = position
    return matrix


def pixel_directions(resolution: int, fov: float, device: torch.device | str = "cpu") -> Tensor:
    """(H, W, 3) unit ray directions in camera coordinates (looking down -z)."""
    y, x = torch.meshgrid(torch.linspace(1, -1, resolution, device=device),
                          torch.linspace(-1, 1, resolution, device=device), indexing="ij")
    z = torch.full_like(x, -1 / math.tan(math.radians(fov) / 2))
    return F.normalize(torch.stack([x, y, z], dim=-1), dim=-1)


def perturb_depths(depths: Tensor, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """The official ``perturb_points`` on evenly spaced depths (..., S, 1)."""
    if mode == "none":
        return depths
    noise = torch.rand(depths.shape, device=depths.device, generator=generator)
    if mode == "jitter":
        return depths + (noise - 0.5) * (depths[..., 1:2, :] - depths[..., 0:1, :])
    if mode == "mid":
        mids = 0.5 * (depths[..., 1:, :] + depths[..., :-1, :])
        upper = torch.cat([mids, depths[..., -1:, :]], dim=-2)
        lower = torch.cat([depths[..., :1, :], mids], dim=-2)
        return lower + (upper - lower) * noise
    raise ValueError(f"unknown perturbation {mode!r}; use 'jitter', 'none' or 'mid'")


def sample_rays(batch: int, resolution: int, settings: RaySettings, yaw: Tensor | None = None,
                pitch: Tensor | None = None, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None) -> Rays:
    """The coarse samples of ``batch`` images at ``resolution`` x ``resolution`` rays; cameras from the prior
    unless ``yaw`` and ``pitch`` (N, 1) are given (render.py's sweeps)."""
    if (yaw is None) != (pitch is None):
        raise ValueError("give both yaw and pitch, or neither")
    if yaw is None:
        yaw, pitch = sample_camera(batch, settings, device, generator)
    matrix = cam2world(camera_position(yaw, pitch, settings.radius))
    directions_cam = pixel_directions(resolution, settings.fov, device)
    steps = torch.linspace(settings.ray_start, settings.ray_end, settings.num_steps, device=device)
    depths = steps.reshape(1, 1, 1, -1, 1).expand(batch, resolution, resolution, -1, 1)
    depths = perturb_depths(depths, settings.perturb, generator)
    rotation, origin = matrix[:, :3, :3], matrix[:, :3, 3]
    directions = torch.einsum("nij,hwj->nhwi", rotation, directions_cam)
    origins = origin[:, None, None, :].expand(-1, resolution, resolution, -1)
    points = origins[..., None, :] + directions[..., None, :] * depths
    return Rays(points, depths, origins, directions, yaw, pitch)


def compositing_weights(sigmas: Tensor, depths: Tensor, noise_std: float = 0.0,
                        generator: torch.Generator | None = None) -> Tensor:
    """Per-sample weights of alpha compositing along each ray (official ``renderer``, clamp_mode 'relu'):

        delta_i = t_{i+1} - t_i (the last 1e10),  alpha_i = 1 - exp(-delta_i relu(sigma_i + noise)),
        T_i = prod_{j<i} (1 - alpha_j + 1e-10),   w_i = alpha_i T_i.

    sigmas and depths (..., S, 1), depths increasing along S."""
    deltas = torch.cat([depths[..., 1:, :] - depths[..., :-1, :], torch.full_like(depths[..., :1, :], 1e10)], dim=-2)
    if noise_std > 0:
        sigmas = sigmas + torch.randn(sigmas.shape, device=sigmas.device, generator=generator) * noise_std
    alphas = 1 - torch.exp(-deltas * F.relu(sigmas))
    shifted = torch.cat([torch.ones_like(alphas[..., :1, :]), 1 - alphas + 1e-10], dim=-2)
    return alphas * torch.cumprod(shifted, dim=-2)[..., :-1, :]


def volume_render(values: Tensor, sigmas: Tensor, depths: Tensor, noise_std: float = 0.0,
                  generator: torch.Generator | None = None) -> Rendered:
    """Alpha compositing (:func:`compositing_weights`, no white background): C = sum_i w_i c_i, depth = sum_i w_i
    t_i, opacity = sum_i w_i. values (..., S, C), sigmas and depths (..., S, 1). The reference the tests hold
    :meth:`volumegan.generator.VolumeSynthesis.nerf` to (which composites its unsorted samples the same way)."""
    weights = compositing_weights(sigmas, depths, noise_std, generator)
    return Rendered((weights * values).sum(dim=-2), (weights * depths).sum(dim=-2), weights,
                    weights.sum(dim=-2))


def sample_pdf(bins: Tensor, weights: Tensor, count: int, deterministic: bool = False, eps: float = 1e-5,
               generator: torch.Generator | None = None) -> Tensor:
    """``count`` samples per row from the piecewise-constant density of ``weights`` (R, B) over the ``bins``
    edges (R, B + 1) by inverse transform sampling (nerf_pl's ``sample_pdf``, as the official)."""
    rows, num_bins = weights.shape
    weights = weights + eps
    cdf = torch.cumsum(weights / weights.sum(dim=-1, keepdim=True), dim=-1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)
    if deterministic:
        u = torch.linspace(0, 1, count, device=bins.device).expand(rows, count).contiguous()
    else:
        u = torch.rand(rows, count, device=bins.device, generator=generator)
    index = torch.searchsorted(cdf, u)
    pair = torch.stack([(index - 1).clamp_min(0), index.clamp_max(num_bins)], dim=-1).view(rows, 2 * count)
    cdf_pair = torch.gather(cdf, 1, pair).view(rows, count, 2)
    bins_pair = torch.gather(bins, 1, pair).view(rows, count, 2)
    denominator = cdf_pair[..., 1] - cdf_pair[..., 0]
    denominator = torch.where(denominator < eps, torch.ones_like(denominator), denominator)
    return bins_pair[..., 0] + (u - cdf_pair[..., 0]) / denominator * (bins_pair[..., 1] - bins_pair[..., 0])


def importance_rays(rays: Rays, coarse_weights: Tensor, count: int,
                    generator: torch.Generator | None = None) -> Rays:
    """The fine samples (official ``HierarchicalSampling``): ``count`` depths per ray drawn from the coarse
    compositing weights (+1e-5) over the mid-points of the coarse depths (the two end weights dropped), detached;
    points = origin + depth * direction. Same cameras as ``rays``."""
    *lead, steps, _ = rays.depths.shape
    depths = rays.depths.reshape(-1, steps)
    mids = 0.5 * (depths[:, :-1] + depths[:, 1:])
    weights = coarse_weights.reshape(-1, steps) + 1e-5
    fine = sample_pdf(mids, weights[:, 1:-1], count, generator=generator).detach().reshape(*lead, count, 1)
    points = rays.origins[..., None, :] + rays.directions[..., None, :] * fine
    return rays._replace(points=points, depths=fine)


def interpolate_feature(points: Tensor, volume: Tensor, bounds: Tensor) -> Tensor:
    """Trilinear lookup of ``points`` (N, P, 3) in ``volume`` (N, C, D, H, W) -> (N, C, P).

    World xyz maps to [-1, 1]^3 through the box ``bounds`` ((min xyz), (max xyz)); x indexes W, y H, z D; corners
    aligned, points outside the box take the border's features (the official ``grid_sample_3d`` equals
    ``grid_sample(align_corners=True, padding_mode='border')``, spec §2.1 step 6)."""
    low, high = bounds[0], bounds[1]
    grid = (points - low) / (high - low) * 2 - 1
    sampled = F.grid_sample(volume, grid[:, None, None], mode="bilinear", padding_mode="border", align_corners=True)
    return sampled[:, :, 0, 0]
