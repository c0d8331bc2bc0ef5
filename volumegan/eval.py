"""Evaluation of a VolumeGAN generator (G_ema).

    python -m volumegan.eval --ckpt runs/volumegan/00000-ffhq256 --data /data/ffhq256.zip          # FID50k-full
    python -m volumegan.eval --ckpt volumegan_ffhq256.pth --data /data/ffhq256.zip --metrics fid50k_full,re
    python -m volumegan.eval --ckpt runs/volumegan/00000-tiny --metrics tiny                       # the CPU preset

- ``fid50k_full`` / ``kid50k_full``: against ALL images of ``--data`` (official ``FID50KFull``: 50,000 fakes of
  G_ema, TF-Inception weights, no truncation, cameras from the training prior, ``perturb_mode='none'`` as the
  README's command; x-flips of the reference as the run's ``data.mirror``), through ``common.metrics``;
- ``re``: reprojection error of the generator's own views (spec §8 "Metrics" 1; any dataset): view B = view A +
  0.3 rad yaw, the expected NeRF depth and opacity of view A, images in [0, 1];
- ``tiny``: on the procedural scenes (:func:`tiny_metrics`): pose control (Pearson r of the commanded yaw and the
  oracle's), the oracle-feature Fréchet distance to held-out scenes, the structure / texture swap (exact opacity
  invariance; which donor the oracle's shape and hue follow), ``re``, and Carver's pose and depth errors with
  estimators trained on the scenes' ground truth (``volumegan.metrics3d``): ``pe`` = mean |oracle's yaw - commanded
  yaw| in degrees (``pe_real``: the oracle on the 500 held-out scenes, the floor; a constant guess: 20.05), ``de`` =
  MSE in scene units^2 of the expected NeRF depth (upsampled to 32x32) against the depth net's depth of the image,
  on the pixels the net calls foreground (``de_valid``: their fraction; ``de_real``: the held-out scenes' true depth,
  the floor).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor, nn

from common.checkpoint import CheckpointError, load_checkpoint, resolve_resume
from common.data import DatasetError, ImageDataset
from common.dist import DeviceError, resolve_device
from common.metrics import WeightsNotFoundError, build_extractor, compute_fid, compute_kid
from common.threads import configure_threads
from volumegan.generator import VolumeGANGenerator
from volumegan.metrics3d import (
    DepthNetConfig,
    OracleConfig,
    depth_error,
    feature_distance,
    load_depth_net,
    load_oracle,
    pose_error,
    predict,
    reprojection_error,
    yaw_correlation,
)
from volumegan.official import load_generator
from volumegan.synthetic import load_scenes, scenes_dataset

METRICS = ("fid50k_full", "kid50k_full", "re", "tiny")


class EvalView(nn.Module):
    """G as the official FID sees it: ``G(z, c)`` with cameras from the prior, no ray jitter, ``noise_mode``."""

    def __init__(self, G: VolumeGANGenerator, noise_mode: str = "random") -> None:
        super().__init__()
        self.G, self.noise_mode = G, noise_mode
        self.z_dim, self.c_dim, self.img_resolution = G.z_dim, G.c_dim, G.img_resolution

    def forward(self, z: Tensor, c: Tensor | None = None, **kwargs: Any) -> Tensor:
        kwargs.setdefault("noise_mode", self.noise_mode)
        return self.G(z, c, perturb="none", **kwargs)


def _unit(images: Tensor) -> Tensor:
    return ((images + 1) / 2).clamp(0, 1)


@torch.no_grad()
def reprojection(G: VolumeGANGenerator, count: int = 64, yaw_delta: float = 0.3, seed: int = 0) -> dict[str, float]:
    """RE of ``count`` latents between a view from the prior and the same view turned by ``yaw_delta``."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(count, G.z_dim, generator=generator)
    ws = G.mapping(z, None)
    rays = G.synthesis.rays
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        a = G.synthesis.render(ws, noise_mode="const", perturb="none")
        b = G.synthesis.render(ws, noise_mode="const", yaw=a.yaw + yaw_delta, pitch=a.pitch, perturb="none")
    out = reprojection_error(_unit(a.image), a.depth, _unit(b.image), b.depth, a.yaw, a.pitch, b.yaw, b.pitch,
                             opacity_a=a.opacity, fov=rays.fov, radius=rays.radius)
    return {"re": out.error, "re_valid": out.valid_fraction}


@torch.no_grad()
def tiny_metrics(G: VolumeGANGenerator, count: int = 512, pairs: int = 128, seed: int = 0) -> dict[str, float]:
    """The tiny preset's measurements of ``G`` (G_ema) with the cached oracle and depth net (module docstring)."""
    oracle, _ = load_oracle()
    depth_net, _ = load_depth_net()
    data = load_scenes(scenes_dataset())
    generator = torch.Generator().manual_seed(seed)
    results: dict[str, float] = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        z = torch.randn(count, G.z_dim, generator=generator)
        renders = [G.synthesis.render(G.mapping(part, None), noise_mode="const", perturb="none")
                   for part in z.split(64)]
        images = torch.cat([r.image for r in renders]).clamp(-1, 1)
        yaws = torch.cat([r.yaw for r in renders])[:, 0]
        results["yaw_r"] = yaw_correlation(oracle, images, yaws)
        held_out = data.images[-count:]
        results["fd"] = feature_distance(oracle, images, held_out)
        results["fd_real"] = feature_distance(oracle, data.images[-2 * count : -count], held_out)
        results.update(_swap(G, oracle, pairs, generator))
        results.update(reprojection(G, seed=seed))
    # DE and PE of the same samples, and their floors on the nets' held-out real scenes (no random draws)
    results["pe"] = pose_error(oracle, images, yaws)
    real = slice(-OracleConfig().held_out, None)
    results["pe_real"] = pose_error(oracle, data.images[real], data.factors["yaw"][real])
    results.update(depth_error(depth_net, images, torch.cat([r.depth for r in renders])))
    real = slice(-DepthNetConfig().held_out, None)
    results["de_real"] = depth_error(depth_net, data.images[real], data.depth[real])["de"]
    return results


def _swap(G: VolumeGANGenerator, oracle: nn.Module, pairs: int, generator: torch.Generator) -> dict[str, float]:
    """Structure codes of latent a with texture codes of latent b at the mean pose: the exact opacity change and,
    over pairs whose donors the oracle tells apart, how often the swap's shape is the structure donor's and its hue
    closer (circularly) to the texture donor's."""
    split, rays = G.synthesis.num_structure_ws, G.synthesis.rays
    ws_a = G.mapping(torch.randn(pairs, G.z_dim, generator=generator), None)
    ws_b = G.mapping(torch.randn(pairs, G.z_dim, generator=generator), None)
    swapped = torch.cat([ws_a[:, :split], ws_b[:, split:]], dim=1)
    yaw, pitch = torch.full((pairs, 1), rays.yaw_mean), torch.full((pairs, 1), rays.pitch_mean)
    renders = []
    for ws in (ws_a, ws_b, swapped):
        torch.manual_seed(1)  # the same importance samples for the three
        renders.append(G.synthesis.render(ws, noise_mode="const", yaw=yaw, pitch=pitch, perturb="none"))
    a, b, s = (predict(oracle, r.image.clamp(-1, 1)) for r in renders)
    differ = a.shape != b.shape
    shape_rate = float((s.shape[differ] == a.shape[differ]).float().mean()) if differ.any() else math.nan

    def distance(h1: Tensor, h2: Tensor) -> Tensor:
        turns = (h1 - h2) % 1.0
        return torch.minimum(turns, 1 - turns)

    far = distance(a.hue, b.hue) > 0.1
    hue_rate = float((distance(s.hue, b.hue) < distance(s.hue, a.hue))[far].float().mean()) if far.any() else math.nan
    return {"swap_opacity_change": float((renders[2].opacity - renders[0].opacity).abs().max()),
            "swap_shape_follows_structure": shape_rate, "swap_hue_follows_texture": hue_rate,
            "swap_pairs_shape": float(differ.sum()), "swap_pairs_hue": float(far.sum())}


def run_mirror(path: Path) -> bool:
    """``data.mirror`` of a project snapshot's config (official checkpoints: the FFHQ recipe's x-flips)."""
    try:
        config = load_checkpoint(path).get("config") or {}
    except CheckpointError:
        return True
    return bool(config.get("data", {}).get("mirror", False))


@click.command()
@click.option("--ckpt", required=True, help="A run dir, snapshot .pt or official checkpoint .pth.")
@click.option("--data", default=None, help="fid50k_full / kid50k_full: the FULL dataset (zip or folder).")
@click.option("--metrics", default="fid50k_full", show_default=True, help=f"Comma-separated: {', '.join(METRICS)}.")
@click.option("--mirror/--no-mirror", default=None, help="Add x-flips to the reference [the run's data.mirror].")
@click.option("--num-gen", default=50_000, show_default=True, type=click.IntRange(min=1), help="Generated images.")
@click.option("--inception-weights", default=None, help="TF-Inception weights file [$GENFORCE_INCEPTION_WEIGHTS].")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Folder for metrics.json.")
@click.option("--device", default=None, help="cpu or cuda [cuda if available].")
def main(ckpt: str, data: str | None, metrics: str, mirror: bool | None, num_gen: int, inception_weights: str | None,
         out: str | None, device: str | None) -> None:
    """Print one line per metric of G_ema (and write metrics.json with --out)."""
    configure_threads()
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise click.UsageError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    if {"fid50k_full", "kid50k_full"} & set(names) and not data:
        raise click.UsageError("fid50k_full / kid50k_full need --data: the FULL dataset the run was trained on")
    try:
        dev = resolve_device(device)
        path = resolve_resume(ckpt, flag="--ckpt") if Path(ckpt).is_dir() else Path(ckpt)
        G = load_generator(path, dev)
        reference = extractor = None
        if {"fid50k_full", "kid50k_full"} & set(names):
            mirror = run_mirror(path) if mirror is None else mirror
            reference = ImageDataset(data, xflip=mirror)
            extractor = build_extractor("tf_inception", inception_weights, device=dev)
    except (CheckpointError, DatasetError, DeviceError, WeightsNotFoundError, OSError) as err:
        raise click.ClickException(str(err)) from None
    results: dict[str, float] = {}
    for name in names:
        if name in ("fid50k_full", "kid50k_full"):
            compute = compute_fid if name == "fid50k_full" else compute_kid
            results[name] = compute(reference, EvalView(G), extractor, num_gen=num_gen)
            click.echo(f"{name} = {results[name]:.4f}  ({path} vs {len(reference)} images of {data}, mirror={mirror})")
        elif name == "re":
            results.update(reprojection(G))
            click.echo(f"re = {results['re']:.4f}  (valid pixels {results['re_valid']:.3f}; 64 latents, +0.3 rad)")
        else:
            results.update(tiny_metrics(G))
            click.echo(" ".join(f"{k}={v:.4f}" for k, v in results.items()))
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        record = {"network": str(path), "data": data, **results}
        (Path(out) / "metrics.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
