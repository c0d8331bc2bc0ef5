"""COCO-style box and mask AP through pycocotools (the InsLoc transfer tables: AP, AP50, AP75, APs, APm, APl).

AP is averaged over IoU thresholds 0.50:0.05:0.95, 101 recall points and categories, at most 100 detections per
image; small/medium/large are GT areas < 32^2, 32^2..96^2, > 96^2 (``pycocotools.cocoeval.COCOeval``, iouType
'bbox', or 'segm' with mask IoU). Values are fractions (papers print x100); pycocotools reports -1 for an area range
without GT objects.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BOX_AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_box_ap(ground_truth: dict[str, Any] | str | os.PathLike, detections: Sequence[dict[str, Any]],
                verbose: bool = False) -> dict[str, float]:
    """Box AP of ``detections`` (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``) against a
    COCO-format ``ground_truth`` (dict or JSON path with ``images``, ``annotations``, ``categories``)."""
    return _coco_ap(ground_truth, detections, "bbox", verbose)


def coco_mask_ap(ground_truth: dict[str, Any] | str | os.PathLike, detections: Sequence[dict[str, Any]],
                 verbose: bool = False) -> dict[str, float]:
    """Mask AP of ``detections`` (``[{"image_id", "category_id", "segmentation": RLE, "score"}, ...]``, RLE as
    :func:`mask_to_rle` writes it) against the ground truth's ``segmentation`` (polygons or RLE)."""
    return _coco_ap(ground_truth, detections, "segm", verbose)


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """A binary (H, W) mask -> COCO's compressed RLE (``{"size": [H, W], "counts": str}``, the results format)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _coco_ap(ground_truth: dict[str, Any] | str | os.PathLike, detections: Sequence[dict[str, Any]], iou_type: str,
             verbose: bool) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # pycocotools writes into both (loadRes: area/id/iscrowd/bbox on detections; evaluate: 'ignore' on annotations):
    # work on copies so the caller's records stay as given
    ground_truth = json.loads(Path(ground_truth).read_text()) if not isinstance(ground_truth, dict) else \
        copy.deepcopy(ground_truth)
    detections = copy.deepcopy(list(detections))
    if not detections:
        return dict.fromkeys(BOX_AP_NAMES, 0.0)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(detections), iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(log.getvalue())
    return {name: float(value) for name, value in zip(BOX_AP_NAMES, evaluator.stats[:6])}
