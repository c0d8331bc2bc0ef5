"""``python -m common.stylegan2.generate --network FILE --seeds 0-15 --trunc 0.7 --outdir out``: a PNG grid.

``--network`` takes this project's snapshots (``snapshot-*.pt``, G_ema is used) and official StyleGAN2-ADA pickles
(``network-snapshot-*.pkl``, read without running their code) alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image
from torch import nn

from common.checkpoint import CheckpointError, load_checkpoint, load_module_state
from common.config import config_from_dict
from common.report import save_image_grid
from common.stylegan2.build import build_generator
from common.stylegan2.config import StyleGAN2Config
from common.stylegan2.legacy import load_official_snapshot
from common.stylegan2.training import generate_images


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return seeds


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """G_ema of a project snapshot or an official pickle, in eval mode."""
    path = Path(path)
    if path.suffix == ".pkl":
        snapshot = load_official_snapshot(path)
        G = snapshot.G_ema or snapshot.G
        if G is None:
            raise CheckpointError(f"{path} holds no generator")
        return G.to(device)
    ckpt = load_checkpoint(path, map_location="cpu")
    if ckpt.get("config") is None or "G_ema" not in ckpt["modules"]:
        raise CheckpointError(f"{path} is not a StyleGAN2-family snapshot (no config or no G_ema)")
    # a paper's snapshot config extends the StyleGAN2 schema with its own sections (insgen: ...); G needs only these
    known = {f.name for f in dataclasses.fields(StyleGAN2Config)}
    cfg = config_from_dict(StyleGAN2Config, {k: v for k, v in ckpt["config"].items() if k in known}, source=str(path))
    shape = ckpt["extra"].get("network")
    if shape is None:
        raise CheckpointError(f"{path} does not record the network's resolution/channels/labels")
    resolution, channels, c_dim = shape["resolution"], shape["img_channels"], shape["c_dim"]
    G = build_generator(cfg, resolution, channels, c_dim)
    load_module_state(G, ckpt["modules"]["G_ema"], "G_ema", str(path))
    return G.eval().requires_grad_(False).to(device)


@click.command()
@click.option("--network", required=True, type=click.Path(exists=True, dir_okay=False), help="Snapshot .pt or .pkl.")
@click.option("--seeds", default="0-15", show_default=True, help="Seeds, e.g. 0-15 or 1,5,9.")
@click.option("--trunc", "truncation_psi", default=1.0, show_default=True, help="Truncation psi.")
@click.option("--class", "class_idx", type=int, default=None, help="Class label for conditional networks.")
@click.option("--noise-mode", default="const", type=click.Choice(["const", "random", "none"]), show_default=True)
@click.option("--outdir", required=True, type=click.Path(file_okay=False))
@click.option("--device", default="cpu", show_default=True)
def main(
    network: str, seeds: str, truncation_psi: float, class_idx: int | None, noise_mode: str, outdir: str, device: str
) -> None:
    """Write grid.png (and one PNG per seed) from a generator."""
    try:
        G = load_generator(network, device)
    except (CheckpointError, OSError, ValueError) as err:
        raise click.UsageError(str(err)) from None
    seed_list = parse_seeds(seeds)
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seed_list])).float().to(device)
    c = None
    if G.c_dim:
        if class_idx is None:
            raise click.UsageError(f"this generator is conditional ({G.c_dim} classes): pass --class")
        c = torch.zeros([len(seed_list), G.c_dim], device=device)
        c[:, class_idx] = 1
    elif class_idx is not None:
        click.echo("warning: --class is ignored by an unconditional generator", err=True)
    images = generate_images(G, z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for seed, image in zip(seed_list, images):
        hwc = image.transpose(1, 2, 0)
        Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc).save(out / f"seed{seed:04d}.png")
    grid = save_image_grid(out / "grid.png", images)
    click.echo(f"wrote {len(seed_list)} images and {grid}")


if __name__ == "__main__":
    main()
