"""Semantic-segmentation scores: one confusion matrix over the whole set -> per-class IoU, mIoU, mAcc, allAcc.

Protocol (metrics.md §6; ProCA ``test.py`` and ``core/utils/misc.py: intersectionAndUnionGPU``): the LOGITS of
every view are upsampled straight to the LABEL size (bilinear, ``align_corners=True`` as ProCA; labels are never
resized) and only then soft-maxed; a multi-scale + flip test averages these label-size probabilities over the views
(flipped views flipped back) and takes the arg-max. Soft-maxing or averaging at the input size and upsampling the
probabilities afterwards is a different order that moves boundary pixels. Pixels whose label is 255 (or >= K) are
ignored, and ONE matrix hist[gt, pred] is accumulated over the evaluation set:

    IoU_c = hist[c,c] / (sum_p hist[c,p] + sum_g hist[g,c] - hist[c,c]),   Acc_c = hist[c,c] / sum_p hist[c,p],
    mIoU = mean_c IoU_c,   mAcc = mean_c Acc_c,   allAcc = trace(hist) / sum(hist).

Averaging per-image IoUs instead gives different numbers. A class absent from both predictions and labels over
the whole set has IoU 0/0: ProCA counts it as 0 in the mean (``absent="zero"``, its I/(U + 1e-10) with np.mean);
mmsegmentation skips it (``absent="nan"``, nanmean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from common import dist

IGNORE_INDEX = 255

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
# Raw Cityscapes (and GTA5) label ids -> train ids 0..18 (cityscapesScripts labels.py); every other id -> 255.
CITYSCAPES_ID_TO_TRAINID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                            25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# SYNTHIA -> Cityscapes: 16 classes (no terrain, truck, train); mIoU* drops wall, fence and pole as well.
SYNTHIA_16_TRAINIDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
SYNTHIA_13_TRAINIDS = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)


def cityscapes_trainids(label_ids: np.ndarray) -> np.ndarray:
    """Map raw ``*_gtFine_labelIds`` ids (any integer array, -1 allowed) to train ids 0..18, others to 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for raw, train in CITYSCAPES_ID_TO_TRAINID.items():
        lut[raw] = train
    ids = np.asarray(label_ids)
    return np.where((ids >= 0) & (ids < 256), lut[np.clip(ids, 0, 255)], IGNORE_INDEX).astype(np.uint8)


def trainids_to_subset(trainids: np.ndarray, subset: Sequence[int]) -> np.ndarray:
    """Re-index 19-class train ids to ``subset`` positions (e.g. :data:`SYNTHIA_16_TRAINIDS` -> 0..15), others 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[list(subset)] = np.arange(len(subset))
    return lut[np.asarray(trainids, dtype=np.uint8)]


def upsample_logits(logits: Tensor, size: tuple[int, int], align_corners: bool = True) -> Tensor:
    """Bilinear upsampling of ``(N, K, h, w)`` logits to the label size ``(H, W)`` (ProCA's ``inference``)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)


class ConfusionMatrix:
    """``hist[gt, pred]`` pixel counts over an evaluation set of ``num_classes`` classes."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.hist = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: Tensor | np.ndarray, label: Tensor | np.ndarray) -> None:
        """Add a batch. ``prediction``: class ids ``(N, H, W)`` or the logits ``(N, K, h, w)`` of one view
        (upsampled to the label size, then argmax; pass class ids for a multi-view average); ``label``: ``(N, H, W)``
        ids with ``ignore_index``."""
        label = torch.as_tensor(label)
        prediction = torch.as_tensor(prediction)
        if prediction.ndim == label.ndim + 1:
            if prediction.shape[-2:] != label.shape[-2:]:
                prediction = upsample_logits(prediction.float(), tuple(label.shape[-2:]))
            prediction = prediction.argmax(dim=1)
        if prediction.shape != label.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in shape")
        gt, pred = label.reshape(-1).long().cpu(), prediction.reshape(-1).long().cpu()
        k = self.num_classes
        valid = (gt != self.ignore_index) & (gt >= 0) & (gt < k) & (pred >= 0) & (pred < k)
        counts = torch.bincount(k * gt[valid] + pred[valid], minlength=k * k)
        self.hist += counts.reshape(k, k).numpy()

    def all_reduce(self, device: torch.device | str = "cpu") -> None:
        """Sum the matrices of all ranks (``device``: where the collective runs, CUDA for NCCL); no-op alone."""
        self.hist = dist.all_reduce_sum(torch.from_numpy(self.hist).to(device)).cpu().numpy()


def segmentation_scores(hist: np.ndarray, absent: str = "zero", classes: Sequence[int] | None = None,
                        class_names: Sequence[str] | None = None) -> dict[str, object]:
    """Scores of a confusion matrix; ``classes`` restricts the means (e.g. SYNTHIA's 13 of 16).

    Returns ``{"mIoU", "mAcc", "allAcc"}`` as fractions plus ``"per_class"``: ``[(name, IoU, Acc), ...]``.
    """
    if absent not in ("zero", "nan"):
        raise ValueError(f"absent must be 'zero' (ProCA) or 'nan' (mmsegmentation), got {absent!r}")
    hist = np.asarray(hist, dtype=np.float64)
    intersection = np.diag(hist)
    gt_area, pred_area = hist.sum(axis=1), hist.sum(axis=0)
    union = gt_area + pred_area - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = intersection / union, intersection / gt_area
    if absent == "zero":
        iou, acc = np.nan_to_num(iou, nan=0.0), np.nan_to_num(acc, nan=0.0)
    selected = list(range(len(hist))) if classes is None else list(classes)
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(hist))]
    return {
        "mIoU": float(np.nanmean(iou[selected])),
        "mAcc": float(np.nanmean(acc[selected])),
        "allAcc": float(intersection.sum() / hist.sum()) if hist.sum() else 0.0,
        "per_class": [(names[c], float(iou[c]), float(acc[c])) for c in range(len(hist))],
    }
