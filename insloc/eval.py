"""``python -m insloc.eval --ckpt RUN``: box-augmentation robustness of an InsLoc encoder (spec insloc.md §8.3 (b)).

For ``count`` composite pairs of the run's data: the query view's object is pooled with a jittered box (an anchor of
IoU 0.5-0.6 with the pasted box, from the run's anchor grid), the key view's with its true box, both by the same
encoder in evaluation mode; the probe is the top-1 retrieval accuracy of the right key among the ``count`` keys, per
FPN level, beside the same retrieval with true boxes on both sides (what a perfectly box-robust encoder keeps).
Beside it, the signs of a collapsed RoI head (:func:`collapse_signs`).
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
from insloc.model import InsLocC4, InsLocFPN
from insloc.training import build_dataset, build_model


def _retrieval(q: Tensor, k: Tensor) -> list[float]:
    """Per level: share of queries whose most similar key is their own; q, k (levels, N, dim)."""
    target = torch.arange(q.shape[1])
    return [float(((ql @ kl.T).argmax(dim=1) == target).float().mean()) for ql, kl in zip(q, k)]


@torch.no_grad()
def box_robustness(encoder: InsLocFPN | InsLocC4, pairs: CompositionPairs, count: int, cfg: InsLocConfig,
                   seed: int = 0, iou_range: tuple[float, float] = (0.5, 0.6)) -> dict[str, list[float]]:
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


@torch.no_grad()
def collapse_signs(encoder: InsLocFPN | InsLocC4, pairs: CompositionPairs, count: int) -> dict[str, list[float]]:
    """Signs of a collapsed RoI head, on the key views of ``count`` composites pooled with their true boxes on every
    level: ``dead_fc``, per fc layer of the head, the share of units that fire on none of them (the dead units spec
    §8.2 saw after too high a learning rate); ``cosine``, per level, the mean cosine between the embeddings of
    different composites (0 for spread embeddings, 1 when every object embeds the same)."""
    items = [pairs[i] for i in range(min(count, len(pairs)))]
    images, boxes = torch.stack([item[2] for item in items]), torch.stack([item[3] for item in items])
    fired: list[Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: fired.append(out > 0)) for layer in encoder.head.fcs]
    was_training = encoder.training
    encoder.eval()
    try:
        embeddings = encoder(images, [boxes] * len(encoder.levels))
    finally:
        for hook in hooks:
            hook.remove()
        encoder.train(was_training)
    fcs = len(encoder.head.fcs)  # fired: every level's pass through fc 1, fc 2, ...
    dead = [1 - float(torch.cat(fired[i::fcs]).any(dim=0).float().mean()) for i in range(fcs)]
    n = embeddings.shape[1]
    cosine = [float(((e @ e.T).sum() - e.pow(2).sum()) / (n * n - n)) for e in embeddings]
    return {"dead_fc": dead, "cosine": cosine}


@click.command()
@click.option("--ckpt", required=True, help="An insloc.train run dir or snapshot (method insloc).")
@click.option("--count", default=256, show_default=True, type=click.IntRange(min=2), help="Composite pairs probed.")
@click.option("--seed", default=0, show_default=True, help="Seed of the probe's composites and jitter.")
def main(ckpt: str, count: int, seed: int) -> None:
    """Box-augmentation robustness (retrieval with jittered query boxes) per FPN level and the signs of a collapsed
    RoI head, as JSON."""
    configure_threads()
    with user_errors():
        path = checkpoint.resolve_resume(ckpt, flag="--ckpt")
        saved = checkpoint.load_checkpoint(path)
        if saved.get("config") is None:
            raise checkpoint.CheckpointError(f"{path} holds no config: not an insloc.train snapshot")
        state = checkpoint.saved_module(saved, "model", str(path))  # first: another package's names its modules
        cfg = config_from_dict(InsLocConfig, saved["config"], source=str(path))
        if cfg.method != "insloc":
            raise checkpoint.CheckpointError(f"{path} is a {cfg.method} run: the probe needs InsLoc's RoI head")
        model = build_model(cfg)
        checkpoint.load_module_state(model, state, "model", str(path))
        cfg.seed = 10_000 + seed  # composites the run never drew
        pairs = build_dataset(cfg)
        result = {**box_robustness(model.encoder_q, pairs, count, cfg, seed),
                  **collapse_signs(model.encoder_q, pairs, count)}
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
