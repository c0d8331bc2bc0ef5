"""``python -m insloc.bench [--what data|pretrain] [--device cuda]``: InsLoc's two pretraining costs.

- ``data``: composite pairs/s of the copy-and-paste pipeline (decode, crop, rescale, paste, colour augmentation,
  normalise, both views) through a ``DataLoader`` with 0 and ``--workers`` workers, on ``--images`` JPEGs written for
  the bench (``--side`` px, ImageNet's typical size) or on a user's folder / ``train.txt`` (``--path``, ``--root``);
  the GPU must not starve: compare with the ``pretrain`` rate per process;
- ``pretrain``: training images/s of one InsLoc step (both views, 4 RoI levels) against one MoCo v2 step on the
  same batch (the paper's networks at ``--size`` px, official 224 / composites 256; or ``--setting tiny``).

Medians of ``--reps`` timed repetitions after one warm-up. The official code (mmdet 2.1 / mmcv 0.6.1 fork) does not
install against current torch, and the paper reports no throughput: the ratio to MoCo v2 is the reference here.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from common.cli import user_errors
from common.config import load_config
from common.dist import DeviceError, resolve_device
from common.threads import configure_threads
from common.timing import median_seconds
from insloc.config import InsLocConfig, config_path
from insloc.synthetic import clutter
from insloc.training import build_dataset, build_model


def write_images(folder: Path, count: int, side: int) -> None:
    """``count`` JPEGs of clutter, ``side`` x ``side * 4 // 3``."""
    rng = np.random.default_rng(0)
    for i in range(count):
        image = (clutter(side, rng) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"bench{i}.jpg"), cv2.resize(image, (side * 4 // 3, side)))


def data_rate(dataset: torch.utils.data.Dataset, workers: int, batch: int) -> float:
    """Items/s through a DataLoader (after the first batch: worker start)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False)
    batches = iter(loader)
    next(batches)
    start, items = time.perf_counter(), 0
    for parts in batches:
        items += len(parts[0])
    return items / (time.perf_counter() - start)


def pretrain_rate(cfg: InsLocConfig, batch: int, reps: int, device: torch.device) -> float:
    """Training images/s of one step of ``cfg.method`` on random inputs (boxes: a centred half-side box)."""
    model = build_model(cfg).to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    side = cfg.data.moco_size if cfg.method == "moco" else cfg.data.base_scale
    images = [torch.randn(batch, 3, side, side, device=device) for _ in range(2)]
    box = torch.tensor([side / 4, side / 4, 3 * side / 4, 3 * side / 4], device=device).repeat(batch, 1)
    inputs = images if cfg.method == "moco" else [images[0], box, images[1], box]

    def step() -> None:
        loss, _ = model(*inputs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / median_seconds(step, reps, device)


@click.command()
@click.option("--what", type=click.Choice(["data", "pretrain"]), default="pretrain", show_default=True)
@click.option("--setting", type=click.Choice(["paper", "tiny"]), default="paper", show_default=True)
@click.option("--batch", default=4, show_default=True, type=click.IntRange(min=2), help="Images per step / batch.")
@click.option("--size", default=None, type=click.IntRange(min=32),
              help="pretrain: MoCo crop and composite side [paper 224 / 256, CPU: 128].")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="data: workers.")
@click.option("--images", default=64, show_default=True, type=click.IntRange(min=2), help="data: JPEGs written.")
@click.option("--side", default=375, show_default=True, type=click.IntRange(min=32), help="data: their height.")
@click.option("--path", default=None, help="data: a user's image folder or train.txt instead of written JPEGs.")
@click.option("--root", default="", help="data: the list's root folder.")
@click.option("--reps", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True)
def main(what: str, setting: str, batch: int, size: int | None, workers: int, images: int, side: int,
         path: str | None, root: str, reps: int, device: str) -> None:
    """Composite pairs/s of the data pipeline, or pretraining images/s of InsLoc against MoCo v2."""
    try:
        dev = resolve_device(device)
    except DeviceError as err:
        raise click.UsageError(str(err)) from None
    configure_threads()
    cfg = load_config(InsLocConfig, config_path("fpn_200ep" if setting == "paper" else "tiny"),
                      [f"model.queue_size={batch * 16}"])
    if what == "data":
        with tempfile.TemporaryDirectory() as folder, user_errors():
            if path is None:
                write_images(Path(folder), images, side)
            cfg.data.synthetic, cfg.data.path, cfg.data.root = False, path or folder, root
            dataset = build_dataset(cfg)  # one line if the user's path is wrong
            for n in (0, workers):
                click.echo(f"composites: {data_rate(dataset, n, batch):.1f} pairs/s with {n} workers "
                           f"(base {cfg.data.base_scale} px)")
        return
    if size:
        cfg.data.base_scale = cfg.data.moco_size = size
    insloc = pretrain_rate(cfg, batch, reps, dev)
    cfg.method = "moco"
    moco = pretrain_rate(cfg, batch, reps, dev)
    click.echo(f"{setting} at {cfg.data.base_scale} px, batch {batch}, {dev}: InsLoc {insloc:.2f} images/s, "
               f"MoCo v2 {moco:.2f} images/s (InsLoc / MoCo {insloc / moco:.2f}x)")


if __name__ == "__main__":
    main()
