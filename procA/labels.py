"""Label-id maps of the ProCA datasets (spec §4): raw ids -> train ids, everything else -> 255 (ignore).

GTA5 and Cityscapes share Cityscapes' 19-class map (:data:`common.metrics.segmentation.CITYSCAPES_ID_TO_TRAINID`).
SYNTHIA-RAND-CITYSCAPES has its own raw ids for 16 classes; for SYNTHIA->Cityscapes the Cityscapes labels use the
16-class map that drops terrain (22), truck (27) and train (31) and renumbers the rest (sky -> 9 ... bicycle -> 15).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from common.metrics.segmentation import CITYSCAPES_CLASSES, CITYSCAPES_ID_TO_TRAINID, SYNTHIA_16_TRAINIDS

IGNORE_LABEL = 255

GTA5_ID_TO_TRAINID: dict[int, int] = dict(CITYSCAPES_ID_TO_TRAINID)
# official core/datasets/synthia.py id_to_trainid (16 classes)
SYNTHIA_ID_TO_TRAINID: dict[int, int] = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10,
                                         17: 11, 8: 12, 19: 13, 12: 14, 11: 15}
_DROPPED_FOR_16 = (22, 27, 31)  # terrain, truck, train
CITYSCAPES16_ID_TO_TRAINID: dict[int, int] = {
    raw: i for i, raw in enumerate(r for r in CITYSCAPES_ID_TO_TRAINID if r not in _DROPPED_FOR_16)
}
CLASSES_19: tuple[str, ...] = tuple(CITYSCAPES_CLASSES)
CLASSES_16: tuple[str, ...] = tuple(CITYSCAPES_CLASSES[i] for i in SYNTHIA_16_TRAINIDS)
# SYNTHIA's 13-class mIoU* drops wall, fence and pole (positions 3, 4, 5 of the 16)
SYNTHIA_13_OF_16: tuple[int, ...] = tuple(i for i in range(16) if i not in (3, 4, 5))


def remap_labels(raw: np.ndarray, id_to_trainid: Mapping[int, int]) -> np.ndarray:
    """Map raw label ids (any integer array) through ``id_to_trainid``; unlisted ids become 255. Returns uint8."""
    raw = np.asarray(raw).astype(np.int64)
    lut = np.full(max(int(raw.max(initial=0)) + 1, 256), IGNORE_LABEL, dtype=np.uint8)
    for source_id, train_id in id_to_trainid.items():
        lut[source_id] = train_id
    out = np.full(raw.shape, IGNORE_LABEL, dtype=np.uint8)
    valid = raw >= 0
    out[valid] = lut[raw[valid]]
    return out


def cityscapes_map(num_classes: int) -> dict[int, int]:
    """The Cityscapes/GTA5 raw-id map for 19 classes, or the SYNTHIA-compatible one for 16."""
    if num_classes == 19:
        return CITYSCAPES_ID_TO_TRAINID
    if num_classes == 16:
        return CITYSCAPES16_ID_TO_TRAINID
    raise ValueError(f"Cityscapes labels exist for 19 or 16 classes, not {num_classes}")

# Cityscapes colours of the 19 train ids (cityscapesScripts labels.py), used for palette PNGs and overlays
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153), (250, 170, 30),
    (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142),
    (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
