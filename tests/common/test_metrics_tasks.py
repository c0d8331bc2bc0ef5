"""mIoU (metrics.md §6), top-k (§7) and COCO box AP: hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.metrics import (
    CITYSCAPES_CLASSES,
    SYNTHIA_13_TRAINIDS,
    SYNTHIA_16_TRAINIDS,
    ConfusionMatrix,
    average_views,
    cityscapes_trainids,
    clip_topk_accuracy,
    coco_box_ap,
    coco_mask_ap,
    mask_to_rle,
    segmentation_scores,
    topk_accuracy,
    video_topk_accuracy,
)
from common.metrics.segmentation import trainids_to_subset


def test_miou_hand_example_with_ignore():
    # metrics.md §10: gt=[0,0,1,255], pred=[0,1,1,0], K=2 -> hist [[1,1],[0,1]] -> IoU 1/2, 1/2
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[[0, 1], [1, 0]]]), torch.tensor([[[0, 0], [1, 255]]]))
    np.testing.assert_array_equal(cm.hist, [[1, 1], [0, 1]])
    scores = segmentation_scores(cm.hist)
    assert scores["mIoU"] == pytest.approx(0.5)
    assert scores["mAcc"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert scores["allAcc"] == pytest.approx(2 / 3)
    assert scores["per_class"] == [("0", 0.5, 0.5), ("1", 0.5, 1.0)]


def test_one_matrix_over_the_set_differs_from_mean_of_per_image_miou():
    cm = ConfusionMatrix(2)
    a = (np.array([[[0, 0, 0, 1]]]), np.array([[[0, 0, 0, 0]]]))  # image 1: IoU0 = 3/4, class 1 absent in gt
    b = (np.array([[[1, 1]]]), np.array([[[1, 1]]]))  # image 2: IoU1 = 1
    cm.update(*a)
    cm.update(*b)
    # set level: IoU0 = 3/4, IoU1 = 2 / (2 + 1) = 2/3
    assert segmentation_scores(cm.hist)["mIoU"] == pytest.approx((3 / 4 + 2 / 3) / 2)


def test_absent_class_policy():
    hist = np.array([[4, 0, 0], [0, 2, 0], [0, 0, 0]])  # class 2 never predicted nor labelled
    assert segmentation_scores(hist, absent="zero")["mIoU"] == pytest.approx(2 / 3)  # ProCA: counts as 0
    assert segmentation_scores(hist, absent="nan")["mIoU"] == pytest.approx(1.0)  # mmseg: skipped
    assert segmentation_scores(hist, classes=[0, 1])["mIoU"] == pytest.approx(1.0)


def test_logits_are_upsampled_to_label_size_not_labels_downsampled():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, :, 0] = 1.0  # left column: class 0
    logits[0, 1, :, 1] = 1.0  # right column: class 1
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, :, 2:] = 1
    cm = ConfusionMatrix(2)
    cm.update(logits, label)
    assert cm.hist.sum() == 16  # evaluated at the label's 4x4 resolution
    np.testing.assert_array_equal(cm.hist, [[8, 0], [0, 8]])  # bilinear: columns 0, 1/3, 2/3, 1 of the logits


def test_cityscapes_id_map_and_synthia_subsets():
    raw = np.array([[7, 8, 26, 33, 0, 6, 9, 10, 14, 15, 16, 18, 29, 30, -1, 34]])
    expected = [[0, 1, 13, 18] + [255] * 12]
    np.testing.assert_array_equal(cityscapes_trainids(raw), expected)
    assert len(CITYSCAPES_CLASSES) == 19 and CITYSCAPES_CLASSES[13] == "car"
    names16 = [CITYSCAPES_CLASSES[i] for i in SYNTHIA_16_TRAINIDS]
    assert len(names16) == 16 and not {"terrain", "truck", "train"} & set(names16)
    dropped = set(SYNTHIA_16_TRAINIDS) - set(SYNTHIA_13_TRAINIDS)
    assert {CITYSCAPES_CLASSES[i] for i in dropped} == {"wall", "fence", "pole"} and len(SYNTHIA_13_TRAINIDS) == 13
    np.testing.assert_array_equal(trainids_to_subset(np.array([0, 9, 10, 18, 255]), SYNTHIA_16_TRAINIDS),
                                  [0, 255, 9, 15, 255])


def test_topk_hand_example():
    # metrics.md §10
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert topk_accuracy(scores, torch.tensor([2, 0]), ks=(1, 2)) == {1: 0.5, 2: 1.0}


def test_video_level_averaging_prob_vs_score():
    # one video, three views: the raw-score mean is dominated by one extreme view (class 0), the probability
    # mean saturates it (class 1): [10, 0] -> p ~ [1, 0]; [0, 3] -> p = [0.047, 0.953] twice
    views = torch.tensor([[[10.0, 0.0], [0.0, 3.0], [0.0, 3.0]]])
    torch.testing.assert_close(average_views(views, "score"), torch.tensor([[10.0 / 3, 2.0]]))
    expected = torch.stack([torch.softmax(v, 0) for v in views[0]]).mean(0, keepdim=True)
    torch.testing.assert_close(average_views(views, "prob"), expected)
    labels = torch.tensor([1])
    assert video_topk_accuracy(views, labels, ks=(1, 2), average="score") == {1: 0.0, 2: 1.0}
    assert video_topk_accuracy(views, labels, ks=(1,), average="prob") == {1: 1.0}
    assert clip_topk_accuracy(views, labels, ks=(1,)) == {1: pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="average_clips"):
        average_views(views, "max")


def _gt() -> dict:
    images = [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},  # small
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 100, 100], "area": 10000, "iscrowd": 0},  # large
    ]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}


def test_coco_box_ap_perfect_and_shifted():
    perfect = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
               {"image_id": 2, "category_id": 1, "bbox": [50, 50, 100, 100], "score": 0.8}]
    ap = coco_box_ap(_gt(), perfect)
    assert ap["AP"] == pytest.approx(1.0) and ap["AP50"] == pytest.approx(1.0) and ap["AP75"] == pytest.approx(1.0)
    assert ap["APs"] == pytest.approx(1.0) and ap["APl"] == pytest.approx(1.0) and ap["APm"] == -1.0  # no medium GT
    # the large box shifted by 20 px: IoU = 80*100 / (2*10000 - 8000) = 2/3 -> counts at 0.50..0.65, not at 0.75
    shifted = [perfect[0], {**perfect[1], "bbox": [70, 50, 100, 100]}]
    ap = coco_box_ap(_gt(), shifted)
    assert ap["AP50"] == pytest.approx(1.0) and ap["APl"] == pytest.approx(4 / 10, abs=1e-6)
    assert ap["AP75"] < 1.0
    assert coco_box_ap(_gt(), []) == dict.fromkeys(("AP", "AP50", "AP75", "APs", "APm", "APl"), 0.0)


def test_coco_box_ap_leaves_the_callers_records_as_given():
    import copy as copy_module

    gt = _gt()
    detections = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    before_gt, before_det = copy_module.deepcopy(gt), copy_module.deepcopy(detections)
    first = coco_box_ap(gt, detections)
    assert gt == before_gt and detections == before_det  # pycocotools adds area/id/iscrowd/ignore to its inputs
    assert coco_box_ap(gt, detections) == first  # so a second evaluation of the same records is the same


def test_coco_mask_ap_perfect_and_half_masks():
    from pycocotools import mask as mask_utils

    gt, masks = _gt(), []  # the same objects as RLE masks: a 20 x 20 square and a 100 x 100 square
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        mask = np.zeros((200, 200), dtype=bool)
        mask[y : y + h, x : x + w] = True
        masks.append(mask)
        ann["segmentation"] = mask_to_rle(mask)
    rle = mask_to_rle(masks[1])
    assert isinstance(rle["counts"], str) and np.array_equal(mask_utils.decode({**rle, "counts": rle["counts"]
                                                                                 .encode()}), masks[1])
    perfect = [{"image_id": i + 1, "category_id": 1, "segmentation": mask_to_rle(m), "score": 0.9}
               for i, m in enumerate(masks)]
    ap = coco_mask_ap(gt, perfect)
    assert ap["AP"] == pytest.approx(1.0) and ap["APs"] == pytest.approx(1.0) and ap["APm"] == -1.0
    half = masks[1].copy()
    half[:, 100:] = False  # the left half of the large square: mask IoU 0.5 -> matched only at 0.50
    ap = coco_mask_ap(gt, [perfect[0], {**perfect[1], "segmentation": mask_to_rle(half)}])
    assert ap["AP50"] == pytest.approx(1.0) and ap["APl"] == pytest.approx(1 / 10, abs=1e-6)
    assert coco_box_ap(gt, perfect)["AP"] == pytest.approx(1.0)  # loadRes derives the boxes from the masks


@pytest.mark.parametrize("ks", [(0,), (1, 4), (2.0,), ()])
def test_topk_refuses_k_outside_the_classes(ks):
    with pytest.raises(ValueError, match="top-k needs integers 1 <= k <= 3"):
        topk_accuracy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), ks=ks)
