"""``python -m volumegan.render --network RUN_OR_CKPT --mode video|mesh|swap --seeds 0-3 --outdir out``: the 3D
outputs of a VolumeGAN generator (G_ema), from a project run / snapshot or an official checkpoint.

- ``video``: the official orbit (render.py ``trajectory_type='orbit'``): ``frames`` views with
  pitch = pitch_mean + 0.2 cos(2 pi t), yaw = yaw_mean + 0.4 sin(2 pi t), ``steps_mult`` x the coarse samples
  (official 3), truncation 0.7 on the first 8 ws, const noise, no jitter; one mp4 per seed (OpenCV) and a strip of
  8 frames per seed in ``orbit.png``;
- ``mesh``: the density on a ``grid``^3 lattice (official 256) in a cube of side ``cube`` around the origin (official
  0.3 for FFHQ; default: the feature-volume box) and marching cubes (scikit-image) at ``level`` (official 10);
  one ``.obj`` per seed, vertices in world coordinates;
- ``swap``: structure codes (feature volume + MLP) of the row seed with texture codes (renderer) of the column seed,
  at the prior's mean pose; ``swap.png``. Density and depth follow the rows exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np
import torch
from torch import Tensor

from common.checkpoint import CheckpointError
from common.dist import resolve_device
from common.report import save_image_grid
from common.stylegan2.generate import parse_seeds
from volumegan.generator import VolumeGANGenerator
from volumegan.official import load_generator


def _ws(G: VolumeGANGenerator, seeds: list[int], psi: float, cutoff: int, device: torch.device) -> Tensor:
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])).float().to(device)
    return G.mapping(z, None, truncation_psi=psi, truncation_cutoff=min(cutoff, G.num_ws))


def _uint8(images: Tensor) -> np.ndarray:
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def orbit_cameras(yaw_mean: float, pitch_mean: float, frames: int, yaw_amp: float = 0.4, pitch_amp: float = 0.2
                  ) -> list[tuple[float, float]]:
    """(yaw, pitch) of the official orbit: t in linspace(0, 1, frames), yaw = mean + 0.4 sin(2 pi t), pitch =
    mean + 0.2 cos(2 pi t)."""
    return [(yaw_mean + yaw_amp * math.sin(2 * math.pi * t), pitch_mean + pitch_amp * math.cos(2 * math.pi * t))
            for t in np.linspace(0, 1, frames)]


@torch.no_grad()
def orbit(G: VolumeGANGenerator, ws: Tensor, frames: int = 70, steps_mult: int = 3) -> np.ndarray:
    """uint8 frames (frames, N, 3, H, W) along the official orbit around the prior's mean pose."""
    rays = G.synthesis.rays
    out = []
    for yaw, pitch in orbit_cameras(rays.yaw_mean, rays.pitch_mean, frames):
        cameras = [torch.full((len(ws), 1), v, device=ws.device) for v in (yaw, pitch)]
        image = G.synthesis(ws, noise_mode="const", yaw=cameras[0], pitch=cameras[1], perturb="none",
                            num_steps=rays.num_steps * steps_mult)
        out.append(_uint8(image))
    return np.stack(out)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 24) -> None:
    """(T, 3, H, W) uint8 RGB frames -> an mp4 (OpenCV's mp4v)."""
    import cv2

    height, width = frames.shape[2:]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path} (no mp4v encoder in this OpenCV build)")
    for frame in frames:
        writer.write(cv2.cvtColor(frame.transpose(1, 2, 0), cv2.COLOR_RGB2BGR))
    writer.release()


@torch.no_grad()
def density_grid(G: VolumeGANGenerator, ws: Tensor, grid: int, cube: float, chunk: int = 65536) -> np.ndarray:
    """The raw density (the field's sigma before its relu) of one latent on a grid^3 lattice spanning a cube of
    side ``cube`` centred at the origin, axes (x, y, z) as the official ``create_samples``."""
    field = G.synthesis.field
    axis = torch.linspace(-cube / 2, cube / 2, grid, device=ws.device)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 3)
    structure = ws[:1, : G.synthesis.num_structure_ws]
    volume = field.feature_volume(structure[:, 0]) if field.use_volume else None
    sigmas = [field(structure, points[:, i : i + chunk], volume)[0] for i in range(0, points.shape[1], chunk)]
    return torch.cat(sigmas, dim=1).reshape(grid, grid, grid).cpu().numpy()


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def mesh(density: np.ndarray, cube: float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of ``density`` at ``level`` -> (vertices in world coordinates, faces)."""
    from skimage.measure import marching_cubes

    low, high = float(density.min()), float(density.max())
    if not low < level < high:
        raise ValueError(f"the density lies in [{low:.3g}, {high:.3g}] and never crosses --level {level:g}: "
                         "pick a level inside that range")
    spacing = cube / (density.shape[0] - 1)
    vertices, faces, _, _ = marching_cubes(density, level, spacing=(spacing,) * 3)
    return vertices - cube / 2, faces


@torch.no_grad()
def swap_grid(G: VolumeGANGenerator, ws: Tensor) -> np.ndarray:
    """uint8 images (N * N, 3, H, W): row i = structure codes of latent i, column j = texture codes of latent j."""
    n, split = len(ws), G.synthesis.num_structure_ws
    rays = G.synthesis.rays
    rows = []
    for i in range(n):
        mixed = torch.cat([ws[i : i + 1, :split].expand(n, -1, -1), ws[:, split:]], dim=1)
        yaw = torch.full((n, 1), rays.yaw_mean, device=ws.device)
        pitch = torch.full((n, 1), rays.pitch_mean, device=ws.device)
        torch.manual_seed(0)  # the same importance samples in every row
        rows.append(_uint8(G.synthesis(mixed, noise_mode="const", yaw=yaw, pitch=pitch, perturb="none")))
    return np.concatenate(rows)


@click.command()
@click.option("--network", required=True, type=click.Path(exists=True), help="Run dir, snapshot .pt or official .pth.")
@click.option("--mode", type=click.Choice(["video", "mesh", "swap"]), required=True)
@click.option("--seeds", default="0-3", show_default=True, help="Seeds, e.g. 0-3 or 1,5,9.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False))
@click.option("--trunc", "psi", default=0.7, show_default=True, help="Truncation psi (official 0.7).")
@click.option("--trunc-layers", default=8, show_default=True, type=click.IntRange(min=0), help="ws truncated.")
@click.option("--frames", default=70, show_default=True, type=click.IntRange(min=2), help="video: frames.")
@click.option("--steps-mult", default=3, show_default=True, type=click.IntRange(min=1), help="video: x samples.")
@click.option("--grid", default=256, show_default=True, type=click.IntRange(min=8), help="mesh: lattice size.")
@click.option("--cube", default=None, type=click.FloatRange(min=0, min_open=True),
              help="mesh: cube side [the feature-volume box's largest side].")
@click.option("--level", default=10.0, show_default=True, help="mesh: density iso-level (official 10).")
@click.option("--scale", default=4, show_default=True, type=click.IntRange(min=1), help="PNG cell upscaling.")
@click.option("--device", default="cpu", show_default=True)
def main(network: str, mode: str, seeds: str, outdir: str, psi: float, trunc_layers: int, frames: int,
         steps_mult: int, grid: int, cube: float | None, level: float, scale: int, device: str) -> None:
    """Multi-view videos, marching-cubes meshes or a structure / texture swap grid."""
    seed_list = parse_seeds(seeds)
    try:
        device = resolve_device(device)
        G = load_generator(network, device)
    except (CheckpointError, OSError, ValueError) as err:
        raise click.UsageError(str(err)) from None
    ws = _ws(G, seed_list, psi, trunc_layers, device)
    out = Path(outdir)
    if mode == "mesh":
        bounds = G.synthesis.field.bounds
        side = cube if cube is not None else float((bounds[1] - bounds[0]).max())
        meshes = []
        for seed, w in zip(seed_list, ws):
            try:
                vertices, faces = mesh(density_grid(G, w[None], grid, side), side, level)
            except ValueError as err:
                raise click.UsageError(f"seed {seed}: {err}") from None
            meshes.append((seed, vertices, faces))
        out.mkdir(parents=True, exist_ok=True)
        for seed, vertices, faces in meshes:
            write_obj(out / f"seed{seed:04d}.obj", vertices, faces)
        click.echo(f"wrote {len(meshes)} meshes ({grid}^3 lattice, cube {side:g}, level {level:g}) to {out}")
    elif mode == "video":
        video = orbit(G, ws, frames, steps_mult)
        out.mkdir(parents=True, exist_ok=True)
        for k, seed in enumerate(seed_list):
            write_mp4(out / f"seed{seed:04d}.mp4", video[:, k])
        strip = video[np.linspace(0, frames - 1, 8).round().astype(int)].transpose(1, 0, 2, 3, 4)
        save_image_grid(out / "orbit.png", strip.reshape(-1, *strip.shape[2:]), columns=8, scale=scale, spacing=2)
        click.echo(f"wrote {len(seed_list)} videos of {frames} frames and orbit.png to {out}")
    else:
        images = swap_grid(G, ws)
        save_image_grid(out / "swap.png", images, columns=len(seed_list), scale=scale, spacing=2)
        click.echo(f"wrote {out / 'swap.png'} (rows: structure, columns: texture)")


if __name__ == "__main__":
    main()
