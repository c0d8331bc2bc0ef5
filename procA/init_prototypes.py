"""Stage 2: ``python -m procA.init_prototypes --cfg CFG --ckpt SOURCE_RUN/model.pt`` -> ``<run>/prototypes.pt``.

Prototypes are the exact class means of source-only-model features (and logits) over the whole source train set
at the feature grid, with the model in eval mode and the stage-1 transform (resize only); ``Amount`` is the pixel
count behind each (official prototype_dist_init.py, spec §2.3). Under torchrun the ranks' sums are all-reduced.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch
from torch import Tensor

from common import dist
from common.checkpoint import atomic_save
from common.cli import common_options, output_run, setup_run, user_errors
from common.config import config_rows
from common.logging import progress
from procA.config import CONFIG_DIR, ProCAConfig, config_path
from procA.contrast import labels_at, pixels
from procA.data import build_dataset
from procA.labels import IGNORE_LABEL
from procA.training import PROTOTYPES_FILE, build_model


@torch.no_grad()
def init_prototypes(cfg: ProCAConfig, model_path: str, device: torch.device) -> dict[str, dict[str, Tensor]]:
    """``{'feat': {'Proto', 'Amount'}, 'out': {...}}``: class means of features (C, A) and logits (C, C)."""
    k = cfg.model.num_classes
    model = build_model(cfg, model_path, device).eval()
    data = build_dataset(cfg.data, "source", k, seed=cfg.seed)
    shard = torch.utils.data.Subset(data, range(dist.get_rank(), len(data), dist.get_world_size()))
    loader = torch.utils.data.DataLoader(shard, batch_size=cfg.eval.batch_size, num_workers=cfg.data.num_workers)
    sums = {"feat": torch.zeros(k, model.backbone.out_channels, device=device), "out": torch.zeros(k, k, device=device)}
    counts = torch.zeros(k, device=device)
    for images, labels in progress(loader, len(shard), "prototypes", "img", step=lambda batch: len(batch[0])):
        feats, logits = model(images.to(device))
        y = labels_at(labels.to(device), tuple(feats.shape[-2:])).reshape(-1)
        valid = y != IGNORE_LABEL
        for key, maps in (("feat", feats), ("out", logits)):
            sums[key].index_add_(0, y[valid], pixels(maps)[valid])
        counts += torch.bincount(y[valid], minlength=k)
    counts = dist.all_reduce_sum(counts)
    result = {}
    for key, total in sums.items():
        total = dist.all_reduce_sum(total)
        proto = torch.where(counts[:, None] > 0, total / counts.clamp(min=1)[:, None], torch.zeros_like(total))
        result[key] = {"Proto": proto.cpu(), "Amount": counts.cpu().clone()}
    return result


@click.command()
@common_options(rows=config_rows(CONFIG_DIR))
@click.option("--ckpt", required=True, type=click.Path(exists=True, dir_okay=False), help="Stage-1 model.pt.")
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None, ckpt: str) -> None:
    """Estimate the initial feature- and output-level prototypes over the source set."""
    setup = setup_run(ProCAConfig, "procA", config_path(cfg), overrides, outdir, resume, seed, device)
    with output_run(setup), user_errors():
        protos = init_prototypes(setup.cfg, ckpt, setup.info.device)
        if setup.info.is_main:
            path = atomic_save(protos, Path(setup.run_dir) / PROTOTYPES_FILE)
            absent = int((protos["feat"]["Amount"] == 0).sum())
            dist.print0(f"done: prototypes of {len(protos['feat']['Amount'])} classes ({absent} absent) -> {path}")
    dist.cleanup()


if __name__ == "__main__":
    main()
