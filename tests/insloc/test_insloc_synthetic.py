"""The tiny preset's procedural data: reproducible object images, scenes whose boxes hold their objects, and a COCO
split that the transfer reader takes."""

from __future__ import annotations

import numpy as np

from insloc.detection import CocoDetection
from insloc.synthetic import FAMILIES, detection_scenes, object_images, shape_mask, write_scenes


def test_object_images_are_reproducible_and_cover_the_families():
    a, fam = object_images(60, 64, seed=1)
    b, _ = object_images(60, 64, seed=1)
    assert a.shape == (60, 64, 64, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert set(fam.tolist()) == set(range(len(FAMILIES)))
    for family in FAMILIES:
        mask = shape_mask(family, 30, 20)
        assert mask.shape == (20, 30) and 0.2 < mask.mean() <= 1.0


def test_scenes_boxes_hold_their_objects_without_overlap(tmp_path):
    images, scenes = detection_scenes(20, 96, seed=2)
    assert images.shape == (20, 96, 96, 3)
    for objects in scenes:
        assert 1 <= len(objects) <= 3
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96 and max(x2 - x1, y2 - y1) <= 44
            ys, xs = np.nonzero(obj["mask"])
            assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
    path = write_scenes(tmp_path, images, scenes)
    data = CocoDetection(tmp_path / "images", path, train=False)
    assert len(data) == 20 and data.category_ids == list(range(1, 7))
    image, target = data[0]
    assert np.allclose(image.permute(1, 2, 0).numpy() * 255, images[0], atol=0.5)
    assert target["boxes"].tolist() == [[float(v) for v in o["box"]] for o in scenes[0]]
    overlap = (target["masks"][0].numpy().astype(bool) & scenes[0][0]["mask"]).sum() / scenes[0][0]["mask"].sum()
    assert overlap > 0.8  # the polygon of the contour redraws the mask
