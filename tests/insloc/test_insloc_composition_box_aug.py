"""InsLoc's composition (boxes inside the image, matching the paste) and box augmentation (official anchors, IoU)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from insloc.box_aug import base_anchors, grid_anchors, jitter_boxes
from insloc.composition import CompositionConfig, compose, crop_box, rescale_size


def test_base_anchors_are_mmdets_exact_values():
    anchors = base_anchors()
    assert anchors.shape == (20, 4)
    # scale-major: row = ratio index x 4 + scale index; ratio 1.0 is index 2, ratio 0.5 index 0; scale 2 index 0
    assert torch.allclose(anchors[2 * 4 + 0], torch.tensor([-16.0, -16.0, 16.0, 16.0]))
    assert torch.allclose(anchors[0], torch.tensor([-22.627417, -11.313708, 22.627417, 11.313708]))
    assert torch.allclose(anchors[4 * 4 + 3], torch.tensor([-90.50967, -181.01933, 90.50967, 181.01933]))
    grid = grid_anchors((16, 16))
    assert grid.shape == (5120, 4)  # 256 px input, P4
    assert torch.equal(grid[20], anchors[0] + torch.tensor([16.0, 0.0, 16.0, 0.0]))  # second location: x + 16


def test_jittered_boxes_overlap_the_ground_truth_by_more_than_half():
    anchors = grid_anchors((16, 16))
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    ious = []
    for _ in range(200):
        w, h = rng.integers(70, 255, size=2)
        x1, y1 = rng.integers(0, 256 - w), rng.integers(0, 256 - h)
        gt = torch.tensor([[x1, y1, x1 + w, y1 + h]], dtype=torch.float32)
        box = jitter_boxes(gt, anchors, gen)
        assert box.shape == (1, 4) and any(torch.equal(box[0], a) for a in anchors[box_iou(anchors, gt)[:, 0] > 0.5])
        ious.append(float(box_iou(box, gt)))
    assert min(ious) > 0.5 and 0.5 < float(np.median(ious)) < 0.6  # spec §2.3: median 0.535 measured officially
    far = torch.tensor([[0.0, 0.0, 4.0, 4.0]])  # no anchor reaches IoU 0.5: the best-overlapping ones are used
    assert jitter_boxes(far, anchors, gen).shape == (1, 4)


def test_rescale_keeps_the_aspect_and_fits_the_target_like_mmcv():
    assert rescale_size(100, 200, (150, 130)) == (75, 150)  # min(150 / 200, 130 / 100) = 0.75
    assert rescale_size(300, 100, (128, 254)) == (254, 85)
    assert rescale_size(10, 10, (200, 128)) == (128, 128)


def test_crop_box_follows_torchvisions_rules():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = crop_box(120, 90, (0.2, 1.0), (0.5, 2.0), rng)
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 90
        assert 0.2 * 120 * 90 * 0.9 <= h * w <= 120 * 90
    assert crop_box(10, 100, (0.99, 1.0), (0.5, 2.0), rng) == (0, 40, 10, 20)  # fallback: centre at ratio 2


@pytest.mark.parametrize("seed", range(5))
def test_composite_box_is_inside_and_holds_the_pasted_foreground(seed):
    rng = np.random.default_rng(seed)
    foreground = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    background = np.zeros((90, 70, 3), dtype=np.uint8)
    background[:] = (0, 0, 255)
    image, box = compose(foreground, background, CompositionConfig(), np.random.default_rng(seed))
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8 and box.dtype == np.float32
    x1, y1, x2, y2 = box.astype(int)
    assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256
    assert 64 <= min(x2 - x1, y2 - y1) and max(x2 - x1, y2 - y1) <= 254  # spec §9: sides in [~64, 254]
    outside = np.ones((256, 256), dtype=bool)
    outside[y1:y2, x1:x2] = False
    assert (image[outside] == (0, 0, 255)).all()  # the resized background everywhere else
    # the box holds the crop, resized bilinearly: replay the same draws
    rng = np.random.default_rng(seed)
    top, left, h, w = crop_box(150, 200, (0.2, 1.0), (0.5, 2.0), rng)
    crop = foreground[top : top + h, left : left + w]
    expected = cv2.resize(crop, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(image[y1:y2, x1:x2], expected)
