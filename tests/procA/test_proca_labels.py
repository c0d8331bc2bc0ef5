"""Label-id maps of GTA5, SYNTHIA and Cityscapes (spec §4), ignore ids included."""

import numpy as np

from procA.labels import (
    CITYSCAPES16_ID_TO_TRAINID,
    CLASSES_16,
    GTA5_ID_TO_TRAINID,
    SYNTHIA_ID_TO_TRAINID,
    cityscapes_map,
    remap_labels,
)


def test_gta5_and_cityscapes_19_class_map():
    raw = np.array([[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]])
    assert remap_labels(raw, GTA5_ID_TO_TRAINID).tolist() == [list(range(19))]
    # unlabeled 0, ego 1, ground 6, parking 9, rail 10, guard rail 14, polegroup 18, caravan 29, plate -1, 34 -> ignore
    ignored = np.array([0, 1, 6, 9, 10, 14, 18, 29, 30, -1, 34, 255, 1000])
    assert (remap_labels(ignored, cityscapes_map(19)) == 255).all()


def test_synthia_16_class_map():
    raw = np.array([3, 4, 2, 21, 5, 7, 15, 9, 6, 1, 10, 17, 8, 19, 12, 11])
    assert remap_labels(raw, SYNTHIA_ID_TO_TRAINID).tolist() == list(range(16))
    assert (remap_labels(np.array([0, 13, 14, 16, 18, 20, 22]), SYNTHIA_ID_TO_TRAINID) == 255).all()


def test_cityscapes_16_class_map_drops_terrain_truck_train():
    assert len(CITYSCAPES16_ID_TO_TRAINID) == 16
    mapped = remap_labels(np.array([7, 21, 22, 23, 26, 27, 28, 31, 33]), cityscapes_map(16))
    assert mapped.tolist() == [0, 8, 255, 9, 12, 255, 13, 255, 15]
    assert CLASSES_16[9] == "sky" and CLASSES_16[15] == "bicycle"
