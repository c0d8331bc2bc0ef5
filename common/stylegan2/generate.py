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
from common.dist import resolve_device
from common.report import save_image_grid
from common.stylegan2.snapshot import load_networks
from common.stylegan2.training import generate_images

MAX_SEED = 2**32 - 1  # numpy RandomState's range


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]; anything else (not a number, a negative or too large seed, an empty or reversed
    range) is a ``click.BadParameter`` naming the part."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise click.BadParameter(f"{part!r} in {text!r}: give seeds like 0-15 or 1,5,9 (integers 0..{MAX_SEED})",
                                     param_hint="--seeds")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or last > MAX_SEED:
            raise click.BadParameter(f"{part!r}: a range goes from low to high within 0..{MAX_SEED}",
                                     param_hint="--seeds")
        seeds += range(first, last + 1)
    return seeds


def class_vector(G: nn.Module, class_idx: int | None, count: int, device: torch.device | str) -> torch.Tensor | None:
    """One-hot labels of ``class_idx`` for a conditional G (a usage error when missing or out of range), None for an
    unconditional one (with a warning if a class was given)."""
    if not G.c_dim:
        if class_idx is not None:
            click.echo("warning: --class is ignored by an unconditional generator", err=True)
        return None
    if class_idx is None:
        raise click.UsageError(f"this generator is conditional ({G.c_dim} classes): pass --class")
    if not 0 <= class_idx < G.c_dim:
        raise click.UsageError(f"--class {class_idx}: this generator has classes 0..{G.c_dim - 1}")
    c = torch.zeros([count, G.c_dim], device=device)
    c[:, class_idx] = 1
    return c


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
    seed_list = parse_seeds(seeds)
    try:
        device = resolve_device(device)
        G = load_generator(network, device)
    except (CheckpointError, OSError, ValueError) as err:
        raise click.UsageError(str(err)) from None
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seed_list])).float().to(device)
    c = class_vector(G, class_idx, len(seed_list), device)
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
