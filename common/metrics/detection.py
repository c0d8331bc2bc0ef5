"""COCO-style box AP through pycocotools (the InsLoc transfer tables: AP, AP50, AP75, APs, APm, APl).

AP is averaged over IoU thresholds 0.50:0.05:0.95, 101 recall points and categories, at most 100 detections per
image; small/medium/large are GT areas < 32^2, 32^2..96^2, > 96^2 (``pycocotools.cocoeval.COCOeval``, iouType
'bbox'). Values are fractions (papers print x100); pycocotools reports -1 for an area range without GT boxes.
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

BOX_AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_box_ap(ground_truth: dict[str, Any] | str | os.PathLike, detections: Sequence[dict[str, Any]],
                verbose: bool = False) -> dict[str, float]:
    """Box AP of ``detections`` (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``) against a
    COCO-format ``ground_truth`` (dict or JSON path with ``images``, ``annotations``, ``categories``)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # pycocotools writes into both (loadRes: area/id/iscrowd on detections; evaluate: 'ignore' on annotations):
    # work on copies so the caller's records stay as given
    ground_truth = json.loads(Path(ground_truth).read_text()) if not isinstance(ground_truth, dict) else \
        copy.deepcopy(ground_truth)
    detections = [dict(d) for d in detections]
    if not detections:
        return dict.fromkeys(BOX_AP_NAMES, 0.0)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(list(detections)), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(log.getvalue())
    return {name: float(value) for name, value in zip(BOX_AP_NAMES, evaluator.stats[:6])}
