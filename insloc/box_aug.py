"""InsLoc's bounding-box augmentation (spec insloc.md §2.3; official ``AnchorAugHead`` in
``mmdet/models/dense_heads/anchor_aug.py`` with ``get_stage2_bboxes``): a parameter-free "RPN" that replaces the
query's ground-truth box by a random anchor overlapping it.

- anchors on one level (P4, stride 16): mmdet 2.1 ``AnchorGenerator`` with base size = stride, ``scales`` (2, 4, 8,
  16), ``ratios`` (0.5, 0.75, 1, 1.5, 2) (ratio = h / w), scale-major order, centre offset 0 (anchor centres at
  multiples of the stride, from 0); exact floats (torchvision's ``AnchorGenerator`` rounds them, hence written here);
- per ground-truth box: keep the anchors with IoU > 0.5 (none: the ``nms_pre`` = 4,000 of highest IoU), give them
  scores ~ U(0, 1), NMS at IoU 0.7, pick one survivor uniformly at random.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou, nms

SCALES = (2, 4, 8, 16)
RATIOS = (0.5, 0.75, 1.0, 1.5, 2.0)


def base_anchors(stride: int = 16, scales: Sequence[float] = SCALES, ratios: Sequence[float] = RATIOS) -> Tensor:
    """(len(ratios) x len(scales), 4) xyxy anchors centred at 0 (mmdet ``gen_single_level_base_anchors``)."""
    h_ratios = torch.tensor(ratios, dtype=torch.float64).sqrt()
    w_ratios = 1 / h_ratios
    scales_t = torch.tensor(scales, dtype=torch.float64)
    ws = (stride * w_ratios[:, None] * scales_t[None, :]).reshape(-1)
    hs = (stride * h_ratios[:, None] * scales_t[None, :]).reshape(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=1).float()


def grid_anchors(feature_size: tuple[int, int], stride: int = 16, scales: Sequence[float] = SCALES,
                 ratios: Sequence[float] = RATIOS) -> Tensor:
    """(H x W x A, 4) anchors of an (H, W) feature map, location-major (mmdet ``single_level_grid_anchors``)."""
    height, width = feature_size
    ys, xs = torch.meshgrid(torch.arange(height) * stride, torch.arange(width) * stride, indexing="ij")
    shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 1, 4).float()
    return (shifts + base_anchors(stride, scales, ratios)[None]).reshape(-1, 4)


def jitter_boxes(gt_boxes: Tensor, anchors: Tensor, generator: torch.Generator | None = None,
                 iou_threshold: float = 0.5, nms_threshold: float = 0.7, nms_pre: int = 4000,
                 max_iou: float = 1.0) -> Tensor:
    """One augmented box per ground-truth box (N, 4) -> (N, 4): a random NMS survivor among the anchors that
    overlap it with IoU > ``iou_threshold`` (and <= ``max_iou``: 1 officially; lower for the robustness probe)."""
    out = []
    for box in gt_boxes:
        iou = box_iou(anchors, box[None])[:, 0]
        keep = torch.nonzero((iou > iou_threshold) & (iou <= max_iou)).flatten()
        if len(keep) == 0:
            keep = iou.topk(min(nms_pre, len(iou))).indices
        scores = torch.rand(len(keep), generator=generator)
        survivors = keep[nms(anchors[keep], scores, nms_threshold)]
        pick = torch.randint(len(survivors), (1,), generator=generator)
        out.append(anchors[survivors[pick]][0])
    return torch.stack(out) if out else gt_boxes.new_zeros((0, 4))
