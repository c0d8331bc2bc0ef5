"""InsLoc's pretext step (spec insloc.md §2.2-§2.7; official ``InsLocFPN.forward_train``): instance
discrimination of the pasted box, per FPN level (or on res4 for the C4 variant), MoCo-style.

Per iteration, for two composites of the same foreground (query view, key view) with their boxes:

1. query: the encoder on the query images; the box on P2-P4 is the ground truth, on P5 the jittered box of
   :func:`insloc.box_aug.jitter_boxes` (anchors on the P4 grid; ``box_replaced_with_gt = [True, True, True, False]``);
2. key: the momentum encoder (EMA m = 0.999, updated before the key forward), ground-truth boxes on every level,
   images AND boxes shuffled across processes for its BatchNorm (in one process: ``shuffle_chunks`` shuffled
   sub-batches, each normalised on its own; 1 = one batch);
3. loss: sum over levels of InfoNCE(q_l, k_l, queue_l) at T = 0.2 (:func:`common.contrastive.instance_contrastive_loss`,
   level weights 1); the positive's top-1 per level is logged, not optimised;
4. the keys of every level enter their queues (128 x 65,536 each, randn then L2-normalised) at one shared pointer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from common import dist
from common.contrastive import dequeue_and_enqueue_, instance_contrastive_loss, momentum_update_
from insloc.box_aug import RATIOS, SCALES, grid_anchors, jitter_boxes
from insloc.model import InsLocC4, InsLocFPN


@dataclass
class PretextConfig:
    """Official values (configs/FPN/insloc_fpn_200ep.py): queue 65,536, T 0.2, m 0.999, box augmentation on the
    last level of the query only, anchors on the stride-16 grid with scales 2-16 and ratios 0.5-2."""

    queue_size: int = 65536
    temperature: float = 0.2
    momentum: float = 0.999
    box_aug_levels: tuple[bool, ...] = (False, False, False, True)
    anchor_stride: int = 16
    anchor_scales: tuple[float, ...] = SCALES
    anchor_ratios: tuple[float, ...] = RATIOS
    shuffle_chunks: int = 1


class InsLoc(nn.Module):
    """Query encoder, its momentum copy and one queue per level."""

    def __init__(self, encoder: InsLocFPN | InsLocC4, cfg: PretextConfig, dim: int = 128) -> None:
        super().__init__()
        levels = len(encoder.levels)
        if len(cfg.box_aug_levels) != levels:
            raise ValueError(f"box_aug_levels names {len(cfg.box_aug_levels)} levels; the encoder pools {levels}")
        self.cfg = cfg
        self.encoder_q = encoder
        self.encoder_k = copy.deepcopy(encoder)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.register_buffer("queues", nn.functional.normalize(torch.randn(levels, dim, cfg.queue_size), dim=1))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def query_boxes(self, boxes: Tensor, image_size: tuple[int, int], generator: torch.Generator | None
                    ) -> list[Tensor]:
        """The ground-truth boxes on every level but those of ``box_aug_levels``, which get one jittered box."""
        stride = self.cfg.anchor_stride
        if not any(self.cfg.box_aug_levels):
            return [boxes] * len(self.cfg.box_aug_levels)
        anchors = grid_anchors((image_size[0] // stride, image_size[1] // stride), stride, self.cfg.anchor_scales,
                               self.cfg.anchor_ratios).to(boxes.device)
        jittered = jitter_boxes(boxes.cpu().float(), anchors.cpu(), generator).to(boxes)
        return [jittered if aug else boxes for aug in self.cfg.box_aug_levels]

    @torch.no_grad()
    def keys(self, images: Tensor, boxes: Tensor, generator: torch.Generator | None) -> Tensor:
        """(levels, N, dim) key embeddings with shuffle-BN (across processes, or in shuffled sub-batches)."""
        ids = torch.arange(len(images), device=images.device) + dist.get_rank() * len(images)
        mine, unshuffle = dist.batch_shuffle(ids)
        all_images, all_boxes = dist.all_gather_cat(images), dist.all_gather_cat(boxes)
        order = torch.randperm(len(mine), generator=generator).to(mine.device)
        chunks = [c for c in order.chunk(self.cfg.shuffle_chunks) if len(c)]
        out = torch.empty(len(self.cfg.box_aug_levels), len(mine), self.queues.shape[1], device=images.device)
        for chunk in chunks:
            picked = mine[chunk]
            out[:, chunk] = self.encoder_k(all_images[picked], [all_boxes[picked]] * len(self.cfg.box_aug_levels))
        return dist.batch_unshuffle(out.transpose(0, 1), unshuffle).transpose(0, 1)

    def forward(self, query: Tensor, query_boxes: Tensor, key: Tensor, key_boxes: Tensor,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """The summed per-level loss and its log (loss and positive top-1 per level)."""
        q = self.encoder_q(query, self.query_boxes(query_boxes, tuple(query.shape[-2:]), generator))
        momentum_update_(self.encoder_k, self.encoder_q, self.cfg.momentum)
        k = self.keys(key, key_boxes, generator)
        total = torch.zeros((), device=query.device)
        log: dict[str, float] = {}
        for level, (q_l, k_l) in enumerate(zip(q, k)):
            loss = instance_contrastive_loss(q_l, k_l, self.queues[level].clone(), self.cfg.temperature)
            total = total + loss
            positive = (q_l * k_l).sum(dim=1, keepdim=True)
            top1 = (positive > (q_l @ self.queues[level]).max(dim=1, keepdim=True).values).float().mean()
            name = self.encoder_q.levels[level]
            log[f"loss_{name}"], log[f"acc_{name}"] = float(loss.detach()), float(top1)
        ptr = self.queue_ptr.clone()
        for level in range(len(k)):
            level_ptr = ptr.clone()
            dequeue_and_enqueue_(self.queues[level], level_ptr, k[level])
        self.queue_ptr.copy_(level_ptr)
        return total, log
