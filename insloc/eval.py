"""``python -m insloc.eval --ckpt RUN``: box-augmentation robustness of an InsLoc encoder (spec insloc.md §8.3 (b)).

For ``count`` composite pairs of the run's data: the query view's object is pooled with a jittered box (an anchor of
IoU 0.5-0.6 with the pasted box, from the run's anchor grid), the key view's with its true box, both by the same
encoder in evaluation mode; the probe is the top-1 retrieval accuracy of the right key among the ``count`` keys, per
FPN level, beside the same retrieval with true boxes on both sides (what a perfectly box-robust encoder keeps).
"""

from __future__ import annotations

import json

import click
import torch
from torch import Tensor

from common import checkpoint
from common.cli import user_errors
from common.config import config_from_dict
from common.threads import configure_threads
from insloc.box_aug import grid_anchors, jitter_boxes
from insloc.config import InsLocConfig
from insloc.data import CompositionPairs
from insloc.model import InsLocFPN
from insloc.training import build_dataset, build_model


def _retrieval(q: Tensor, k: Tensor) -> list[float]:
    """Per level: share of queries whose most similar key is their own; q, k (levels, N, dim)."""
    target = torch.arange(q.shape[1])
    return [float(((ql @ kl.T).argmax(dim=1) == target).float().mean()) for ql, kl in zip(q, k)]


@torch.no_grad()
def box_robustness(encoder: InsLocFPN, pairs: CompositionPairs, count: int, cfg: InsLocConfig, seed: int = 0,
                   iou_range: tuple[float, float] = (0.5, 0.6)) -> dict[str, list[float]]:
    """Retrieval top-1 per level with jittered query boxes, and with true boxes."""
    items = [pairs[i] for i in range(min(count, len(pairs)))]
    q_img, q_box, k_img, k_box = (torch.stack(parts) for parts in zip(*items))
    m, size = cfg.model, q_img.shape[-1]
    anchors = grid_anchors((size // m.anchor_stride, size // m.anchor_stride), m.anchor_stride, m.anchor_scales,
                           m.anchor_ratios)
    jittered = jitter_boxes(q_box, anchors, torch.Generator().manual_seed(seed), iou_range[0], max_iou=iou_range[1])
    was_training = encoder.training
    encoder.eval()
    levels = len(m.box_aug_levels)
    keys = encoder(k_img, [k_box] * levels)
    out = {"jittered": _retrieval(encoder(q_img, [jittered] * levels), keys),
           "true_boxes": _retrieval(encoder(q_img, [q_box] * levels), keys)}
    encoder.train(was_training)
    return out


@click.command()
@click.option("--ckpt", required=True, help="An insloc.train run dir or snapshot (method insloc).")
@click.option("--count", default=256, show_default=True, type=click.IntRange(min=2), help="Composite pairs probed.")
@click.option("--seed", default=0, show_default=True, help="Seed of the probe's composites and jitter.")
def main(ckpt: str, count: int, seed: int) -> None:
    """Box-augmentation robustness (retrieval with jittered query boxes) per FPN level, as JSON."""
    configure_threads()
    with user_errors():
        path = checkpoint.resolve_resume(ckpt, flag="--ckpt")
        saved = checkpoint.load_checkpoint(path)
        if saved.get("config") is None:
            raise checkpoint.CheckpointError(f"{path} holds no config: not an insloc.train snapshot")
        cfg = config_from_dict(InsLocConfig, saved["config"], source=str(path))
        if cfg.method != "insloc":
            raise checkpoint.CheckpointError(f"{path} is a {cfg.method} run: the probe needs InsLoc's RoI head")
        model = build_model(cfg)
        checkpoint.load_module_state(model, checkpoint.saved_module(saved, "model", str(path)), "model", str(path))
        cfg.seed = 10_000 + seed  # composites the run never drew
        result = box_robustness(model.encoder_q, build_dataset(cfg), count, cfg, seed)
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
