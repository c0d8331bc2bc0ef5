"""``python -m volumegan.generate --network RUN_OR_CKPT --seeds 0-15 --trunc 0.7 --outdir out``: images (G_ema) from
cameras of the training prior; ``--network`` takes a project run dir / snapshot or an official checkpoint
(``volumegan_ffhq256.pth``). Multi-view videos, meshes and swap grids: ``volumegan.render``."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from common.checkpoint import CheckpointError
from common.dist import resolve_device
from common.report import save_image_grid
from common.stylegan2.generate import parse_seeds
from common.stylegan2.training import generate_images
from volumegan.official import load_generator


@click.command()
@click.option("--network", required=True, type=click.Path(exists=True), help="Run dir, snapshot .pt or official .pth.")
@click.option("--seeds", default="0-15", show_default=True, help="Seeds, e.g. 0-15 or 1,5,9.")
@click.option("--trunc", "truncation_psi", default=1.0, show_default=True, help="Truncation psi.")
@click.option("--trunc-layers", default=None, type=click.IntRange(min=1), help="Truncate the first ws only [all].")
@click.option("--noise-mode", default="const", type=click.Choice(["const", "random", "none"]), show_default=True)
@click.option("--outdir", required=True, type=click.Path(file_okay=False))
@click.option("--device", default="cpu", show_default=True)
def main(network: str, seeds: str, truncation_psi: float, trunc_layers: int | None, noise_mode: str, outdir: str,
         device: str) -> None:
    """Write grid.png and one PNG per seed."""
    seed_list = parse_seeds(seeds)
    try:
        device = resolve_device(device)
        G = load_generator(network, device)
    except (CheckpointError, OSError, ValueError) as err:
        raise click.UsageError(str(err)) from None
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seed_list])).float().to(device)
    images = generate_images(G, z, None, truncation_psi=truncation_psi, truncation_cutoff=trunc_layers,
                             noise_mode=noise_mode, perturb="none")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for seed, image in zip(seed_list, images):
        Image.fromarray(image.transpose(1, 2, 0)).save(out / f"seed{seed:04d}.png")
    grid = save_image_grid(out / "grid.png", images, spacing=2)
    click.echo(f"wrote {len(seed_list)} images and {grid}")


if __name__ == "__main__":
    main()
