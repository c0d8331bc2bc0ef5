"""FID of a StyleGAN2-family generator against the FULL dataset, as the papers report it, and EqGAN-SA's DI.

Shared by ``insgen.eval``, ``dynamicd.eval`` and ``eqgan.eval``:

    python -m insgen.eval --ckpt runs/insgen/00000-ffhq2k --data /data/ffhq256.zip
    python -m insgen.eval --ckpt ffhq256_2k.pkl --data /data/ffhq256.zip --mirror      # an official pickle
    python -m dynamicd.eval --ckpt runs/dynamicd/00000-ffhq2k_dec --data /data/ffhq256.zip
    python -m eqgan.eval --ckpt runs/eqgan/00000-lsun_cat --data /data/lsuncat200k.zip --metrics fid50k_full,di

The known reproduction trap (genforce/insgen issue #8; NVlabs issue #78; spec insgen.md §5): during a limited-data
run the official metric compares against the training subset, which gives a much worse FID (e.g. 22.4 vs InsGen's
11.92 at FFHQ-2K). Here the reference is always the dataset given in ``--data`` with no subset; x-flips follow the run's
``data.mirror`` (the official recipe: ``calc_metrics.py --data=<full set> --mirror=1``) unless ``--mirror`` /
``--no-mirror`` says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import torch

from common.checkpoint import CheckpointError, load_checkpoint, resolve_resume
from common.data import DatasetError, ImageDataset
from common.metrics import WeightsNotFoundError, build_extractor, compute_fid, compute_kid
from common.stylegan2.snapshot import load_networks
from common.threads import configure_threads

METRICS = ("fid50k_full", "kid50k_full", "di")


@torch.no_grad()
def disequilibrium(D: torch.nn.Module, G: torch.nn.Module, reference: ImageDataset, num: int,
                   device: torch.device, batch: int = 32, seed: int = 0) -> dict[str, float]:
    """EqGAN-SA's disequilibrium indicator DI = mean raw D(real) - mean raw D(G(z)) (spec eqgan.md §5; lower is
    closer to equilibrium), with the snapshot's D, its training G (what the logged scores measure) and ``num`` reals
    drawn with ``seed`` from ``reference``, un-augmented."""
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(reference), generator=gen)[:num].tolist()
    real, fake = [], []
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch]
        items = [reference[i] for i in chunk]
        img = torch.from_numpy(np.stack([x for x, _ in items])).to(device).float() / 127.5 - 1
        c = torch.from_numpy(np.stack([y for _, y in items])).to(device).float()
        if c.shape[1] != G.c_dim:
            c = torch.zeros([len(chunk), G.c_dim], device=device)
        real.append(D(img, c).flatten())
        z = torch.randn([len(chunk), G.z_dim], generator=gen).to(device)
        fake.append(D(G(z, c, noise_mode="const"), c).flatten())
    real_mean, fake_mean = float(torch.cat(real).mean()), float(torch.cat(fake).mean())
    return {"di": real_mean - fake_mean, "di_real": real_mean, "di_fake": fake_mean}


@click.command()
@click.option("--ckpt", required=True, type=click.Path(exists=True), help="Run dir, snapshot .pt or official .pkl.")
@click.option("--data", required=True, help="The FULL dataset (zip or folder), not the training subset.")
@click.option("--metrics", default="fid50k_full", show_default=True, help=f"Comma-separated: {', '.join(METRICS)}.")
@click.option("--mirror/--no-mirror", default=None, help="Add x-flips to the reference [the run's data.mirror].")
@click.option("--num-gen", default=50_000, show_default=True, help="Generated images.")
@click.option("--num-di", default=10_000, show_default=True, help="di: reals and fakes scored by D (each).")
@click.option("--inception-weights", default=None, help="TF-Inception weights file [$GENFORCE_INCEPTION_WEIGHTS].")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Folder for metrics.json.")
@click.option("--device", default=None, help="cpu or cuda [cuda if available].")
def main(
    ckpt: str,
    data: str,
    metrics: str,
    mirror: bool | None,
    num_gen: int,
    num_di: int,
    inception_weights: str | None,
    out: str | None,
    device: str | None,
) -> None:
    """Compute FID/KID of G_ema against the full dataset (and DI with D and G) and print one line per metric."""
    configure_threads()
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise click.UsageError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        path = resolve_resume(ckpt, flag="--ckpt") if Path(ckpt).is_dir() else Path(ckpt)
        if mirror is None:
            mirror = run_mirror(path)
        nets = load_networks(path, dev)
        G = nets.G_ema if nets.G_ema is not None else nets.G
        reference = ImageDataset(data, xflip=mirror)
        extractor = None
        if set(names) - {"di"}:
            extractor = build_extractor("tf_inception", inception_weights, device=dev)
    except (CheckpointError, DatasetError, WeightsNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    results = {}
    for name in names:
        if name == "di":
            results.update(disequilibrium(nets.D.eval(), nets.G.eval(), reference, min(num_gen, num_di), dev))
            click.echo(f"di = {results['di']:.4f}  (mean D(real) {results['di_real']:.4f} - mean D(G(z)) "
                       f"{results['di_fake']:.4f}, {min(num_gen, num_di)} each, {path}, D and G)")
            continue
        compute = compute_fid if name == "fid50k_full" else compute_kid
        results[name] = compute(reference, G, extractor, num_gen=num_gen)
        click.echo(f"{name} = {results[name]:.4f}  ({path} vs {len(reference)} images of {data}, mirror={mirror})")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        record = {"network": str(path), "data": data, "mirror": mirror, "num_gen": num_gen, **results}
        (Path(out) / "metrics.json").write_text(json.dumps(record, indent=1))


def run_mirror(path: Path) -> bool:
    """``data.mirror`` of a project snapshot's config; an official pickle records its own training_set_kwargs."""
    if path.suffix == ".pkl":  # read without building its networks (a fork's G needs its package)
        from common.stylegan2.legacy import read_official_pickle

        kwargs = read_official_pickle(path).get("training_set_kwargs") or {}
        return bool(kwargs.get("xflip", False))
    config = load_checkpoint(path).get("config") or {}
    return bool(config.get("data", {}).get("mirror", False))


if __name__ == "__main__":
    main()
