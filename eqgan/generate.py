"""``python -m eqgan.generate --network FILE --seeds 0-7 [--centers 0.4,-0.4 | --heatmap edit.npz] --outdir out``.

Images from EqGAN-SA's G_ema, each with its own random multi-level heatmap (drawn from the seed). With ``--centers
y,x`` (level-1 centre in [-1, 1], y first, as the official code) or ``--heatmap FILE.npz`` (arrays ``b8`` (N|1, 1, R,
R), ``b16`` (.., 2, ..), ``b32`` (.., 4, ..)) each seed is rendered twice, with its drawn heatmap and with the edit,
same z, same noise, same deltas and widths: the paper's interactive spatial editing (its UI is not released). Writes
``grid.png`` (row 1 drawn, row 2 edited), ``heatmaps.png`` (the level means, same layout) and one PNG per image.
Project snapshots and official genforce/eqgan-sa pickles (``use_sel``) are accepted.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from common.checkpoint import CheckpointError
from common.dist import resolve_device
from common.report import save_image_grid
from common.stylegan2.generate import load_generator, parse_seeds
from eqgan.spatial import LEVELS, SpatialSynthesisNetwork, generate_heatmap_multi, heatmap_spec


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def _edit(spec: dict, centers: str | None, heatmap_file: str | None, batch: int, resolution: int) -> dict:
    """The edited heatmaps: the seed's draws with new level-1 centres, or the arrays of a file."""
    if heatmap_file is not None:
        arrays = np.load(heatmap_file)
        missing = [k for k in LEVELS if k not in arrays]
        if missing:
            raise click.UsageError(f"{heatmap_file} lacks array(s) {', '.join(missing)}: give b8, b16 and b32")
        edited = {}
        for level, channels in zip(LEVELS, (1, 2, 4)):
            value = torch.from_numpy(np.asarray(arrays[level], dtype=np.float32))
            if value.ndim != 4 or value.shape[1:] != (channels, resolution, resolution) or value.shape[0] not in (
                    1, batch):
                raise click.UsageError(f"{heatmap_file}: {level} must have shape (N or 1, {channels}, {resolution}, "
                                       f"{resolution}), got {tuple(value.shape)}")
            edited[level] = value.expand(batch, -1, -1, -1)
        return edited
    try:
        y, x = (float(v) for v in centers.split(","))
    except ValueError:
        raise click.UsageError(f"--centers takes 'y,x' in [-1, 1], e.g. 0.4,-0.4; got {centers!r}") from None
    return generate_heatmap_multi(batch, resolution, **{**spec, "centers": torch.tensor([[y, x]] * batch)})


@click.command()
@click.option("--network", required=True, type=click.Path(exists=True), help="Snapshot .pt, run dir or .pkl.")
@click.option("--seeds", default="0-7", show_default=True, help="Seeds, e.g. 0-7 or 1,5,9.")
@click.option("--trunc", "truncation_psi", default=1.0, show_default=True, help="Truncation psi.")
@click.option("--centers", default=None, help="Edit: the level-1 heatmap centre 'y,x' in [-1, 1].")
@click.option("--heatmap", "heatmap_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Edit: an .npz with b8, b16, b32 heatmaps.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False))
@click.option("--device", default="cpu", show_default=True)
def main(network: str, seeds: str, truncation_psi: float, centers: str | None, heatmap_file: str | None,
         outdir: str, device: str) -> None:
    """Write grid.png and heatmaps.png: each seed with its drawn heatmap (and with the edit)."""
    if centers is not None and heatmap_file is not None:
        raise click.UsageError("give --centers or --heatmap, not both")
    seed_list = parse_seeds(seeds)
    try:
        device = resolve_device(device)
        G = load_generator(network, device)
    except (CheckpointError, OSError, ValueError) as err:
        raise click.UsageError(str(err)) from None
    if not isinstance(G.synthesis, SpatialSynthesisNetwork):
        raise click.UsageError(f"{network} holds a plain StyleGAN2 generator (no heatmaps): use "
                               "python -m common.stylegan2.generate")
    if G.c_dim:
        raise click.UsageError("eqgan.generate supports unconditional generators (the paper's)")
    res, edit = G.img_resolution, centers is not None or heatmap_file is not None
    images: list[list[np.ndarray]] = [[], []]
    maps: list[list[np.ndarray]] = [[], []]
    for seed in seed_list:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float().to(device)
        spec = heatmap_spec(1, torch.Generator().manual_seed(seed))
        versions = [generate_heatmap_multi(1, res, **spec)]
        if edit:
            versions.append(_edit(spec, centers, heatmap_file, 1, res))
        with torch.no_grad():
            ws = G.mapping(z, None, truncation_psi=truncation_psi)
            for row, heatmap in enumerate(versions):
                heatmap = {k: v.to(device) for k, v in heatmap.items()}
                images[row].append(_to_uint8(G.synthesis(ws, heatmap=heatmap, noise_mode="const"))[0])
                mean = torch.stack([heatmap[k].mean(dim=1) for k in LEVELS]).mean(dim=0)  # (1, R, R)
                maps[row].append(_to_uint8(mean.expand(3, -1, -1) * 2 - 1))
    rows = 2 if edit else 1
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, row in zip(("drawn", "edited")[:rows], images):
        for seed, image in zip(seed_list, row):
            Image.fromarray(image.transpose(1, 2, 0)).save(out / f"seed{seed:04d}_{name}.png")
    scale = max(1, 128 // res)
    grid = save_image_grid(out / "grid.png", np.stack(sum(images[:rows], [])), columns=len(seed_list), scale=scale,
                           spacing=2)
    save_image_grid(out / "heatmaps.png", np.stack(sum(maps[:rows], [])), columns=len(seed_list), scale=scale,
                    spacing=2)
    click.echo(f"wrote {len(seed_list) * rows} images, {grid} and {out / 'heatmaps.png'}")


if __name__ == "__main__":
    main()
