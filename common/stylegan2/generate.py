"""``python -m common.stylegan2.generate --network FILE --seeds 0-15 --trunc 0.7 --outdir out``: a PNG grid.

``--network`` takes this project's snapshots (``snapshot-*.pt`` or a run dir; G_ema is used, rebuilt by the method
that trained it) and official StyleGAN2-ADA pickles and those of its forks (``network-snapshot-*.pkl``, read
without running their code) alike.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image
from torch import nn

from common.checkpoint import CheckpointError
from common.report import save_image_grid
from common.stylegan2.snapshot import load_networks
from common.stylegan2.training import generate_images


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return seeds


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """G_ema (else G) of a project snapshot, run dir or official pickle, in eval mode (``load_networks``)."""
    nets = load_networks(path, device)
    return nets.G_ema if nets.G_ema is not None else nets.G


@click.command()
@click.option("--network", required=True, type=click.Path(exists=True), help="Snapshot .pt, run dir or .pkl.")
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
