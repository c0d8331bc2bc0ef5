"""GTA5 / SYNTHIA / Cityscapes loaders on tiny files with the real layouts; layout errors; synthetic scenes."""

import shutil

import cv2
import numpy as np
import PIL.Image
import pytest
import torch

from common.data import DatasetError
from procA.data import SegmentationTransform, cityscapes, gta5, synthia, with_pseudo_labels
from procA.pseudo_label import save_label_png
from procA.synthetic import CLASSES, street_scenes


def _rgb(path, w=8, h=6, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _ids(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.asarray(ids, np.uint8)).save(path)


def test_gta5_maps_ids_and_resizes(tmp_path):
    root = tmp_path / "gtav"
    _rgb(root / "images" / "00001.png")
    _ids(root / "labels" / "00001.png", np.tile([7, 26, 0, 33], (6, 2)))
    data = gta5(root, "", SegmentationTransform((4, 3)))
    image, label = data[0]
    assert image.shape == (3, 3, 4) and image.dtype == torch.float32
    assert label.shape == (3, 4) and set(label.unique().tolist()) <= {0, 13, 18, 255}
    full, full_label = gta5(root, "", SegmentationTransform((8, 6)))[0]
    assert full_label[0].tolist() == [0, 13, 255, 18, 0, 13, 255, 18]
    assert full[:, 0, 0].tolist() == pytest.approx(
        ((100 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])).tolist(), rel=1e-5
    )


def test_gta5_layout_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match=r"GTA5 folder not found: .*nowhere; expected layout <root>/images"):
        gta5(tmp_path / "nowhere", "", SegmentationTransform((4, 3)))
    root = tmp_path / "gtav"
    _rgb(root / "images" / "00001.png")
    (root / "labels").mkdir()
    with pytest.raises(DatasetError, match=r"GTA5 label missing for .*00001.png: expected .*labels/00001.png"):
        gta5(root, "", SegmentationTransform((4, 3)))
    lst = tmp_path / "list.txt"
    lst.write_text("00002.png\n")
    with pytest.raises(DatasetError, match=r"image listed but missing: .*images/00002.png"):
        gta5(root, str(lst), SegmentationTransform((4, 3)))
    with pytest.raises(DatasetError, match="list file not found"):
        gta5(root, str(tmp_path / "absent.txt"), SegmentationTransform((4, 3)))


def test_synthia_reads_16_bit_first_channel(tmp_path):
    base = tmp_path / "synthia" / "RAND_CITYSCAPES"
    _rgb(base / "RGB" / "0000000.png")
    raw = np.zeros((6, 8, 3), np.uint16)
    raw[..., 2] = np.tile([3, 1, 11, 0], (6, 2))  # cv2 is BGR: index 2 is the first (R) channel = class id
    raw[..., 0] = 999  # instance ids in another channel must not matter
    (base / "GT" / "LABELS").mkdir(parents=True)
    cv2.imwrite(str(base / "GT" / "LABELS" / "0000000.png"), raw)
    _, label = synthia(tmp_path / "synthia", "", SegmentationTransform((8, 6)))[0]
    assert label[0].tolist() == [0, 9, 15, 255] * 2
    with pytest.raises(DatasetError, match=r"SYNTHIA folder not found: .*RAND_CITYSCAPES; expected layout"):
        synthia(tmp_path, "", SegmentationTransform((8, 6)))


def test_cityscapes_val_keeps_full_label_and_train_is_unlabelled(tmp_path):
    root = tmp_path / "cityscapes"
    for split in ("train", "val"):
        _rgb(root / "leftImg8bit" / split / "aachen" / "aachen_000000_000019_leftImg8bit.png")
    _ids(root / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png",
         np.tile([7, 22, 27, 23], (6, 2)))
    val = cityscapes(root, "val", "", SegmentationTransform((4, 3), keep_label_size=True), num_classes=16)
    image, label = val[0]
    assert image.shape == (3, 3, 4) and label.shape == (6, 8)
    assert label[0, :4].tolist() == [0, 255, 255, 9]  # 16 classes: terrain and truck dropped, sky -> 9
    assert cityscapes(root, "val", "", SegmentationTransform((8, 6)))[0][1][0, :4].tolist() == [0, 9, 14, 10]
    train = cityscapes(root, "train", "", SegmentationTransform((4, 3)), labelled=False)
    assert (train[0][1] == 255).all()
    with pytest.raises(DatasetError, match=r"Cityscapes val labels folder not found: .*gtFine/val"):
        cityscapes(_copy_without_gt(root), "val", "", SegmentationTransform((4, 3)))
    pl = tmp_path / "pl"
    pl.mkdir()
    save_label_png(np.full((6, 8), 3), pl / "aachen_000000_000019_leftImg8bit.png")
    assert (with_pseudo_labels(train, pl, SegmentationTransform((8, 6)), 19)[0][1] == 3).all()
    with pytest.raises(DatasetError, match="pseudo-label missing"):
        with_pseudo_labels(train, tmp_path, SegmentationTransform((8, 6)), 19)
    save_label_png(np.full((6, 8), 17), pl / "aachen_000000_000019_leftImg8bit.png")  # 19-class labels, 16 classes
    with pytest.raises(DatasetError, match=r"aachen_000000_000019_leftImg8bit.png holds class ids \[17\] outside "
                       "0..15"):
        with_pseudo_labels(train, pl, SegmentationTransform((8, 6)), 16)[0]


def _copy_without_gt(root):
    other = root.parent / "cs_nogt"
    shutil.copytree(root / "leftImg8bit", other / "leftImg8bit")
    return other


def test_self_training_scale_crop_pads_labels_with_ignore():
    torch.manual_seed(0)
    image = PIL.Image.fromarray(np.full((4, 4, 3), 50, np.uint8))
    x, y = SegmentationTransform((16, 16), "scale_crop")(image, np.zeros((4, 4), np.uint8))
    assert x.shape == (3, 16, 16) and y.shape == (16, 16)
    assert (y == 255).any() and (y == 0).any()  # a 2-6 px scaled image padded to a 16 px crop


def test_synthetic_scenes_deterministic_and_shifted():
    a_img, a_lab = street_scenes(4, 32, seed=1, domain="source")
    b_img, b_lab = street_scenes(4, 32, seed=1, domain="source")
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    t_img, t_lab = street_scenes(4, 32, seed=1, domain="target")
    assert np.array_equal(t_lab, a_lab)  # same layout sampler: no label shift
    assert np.abs(t_img.astype(float) - a_img).mean() > 10  # but a visible appearance shift
    assert a_lab.max() < len(CLASSES)


def _pil_nearest(label, size):
    return np.array(PIL.Image.fromarray(label).resize(size, PIL.Image.NEAREST))


@pytest.mark.parametrize("size", [(16, 11), (50, 71)])
def test_label_resize_equals_pil_nearest_on_odd_sizes(size):
    label = np.random.RandomState(0).randint(0, 19, (23, 37)).astype(np.uint8)  # H x W = 23 x 37
    image = PIL.Image.fromarray(np.zeros((23, 37, 3), np.uint8))
    _, resized = SegmentationTransform(size)(image, label)  # official transform.py: F.resize(label, Image.NEAREST)
    assert np.array_equal(resized.numpy(), _pil_nearest(label, size))


def test_scale_crop_label_resize_equals_pil_nearest():
    label = np.random.RandomState(1).randint(0, 19, (23, 37)).astype(np.uint8)
    image = PIL.Image.fromarray(np.zeros((23, 37, 3), np.uint8))
    torch.manual_seed(4)
    _, out = SegmentationTransform((64, 64), "scale_crop")(image, label)  # crop larger than any scale: no offset
    torch.manual_seed(4)
    scale = float(torch.empty(()).uniform_(0.5, 1.5))
    torch.randint(0, 1, ()), torch.randint(0, 1, ())
    flip = bool(torch.rand(()) < 0.5)
    w, h = int(37 * scale + 0.5), int(23 * scale + 0.5)
    expected = np.full((64, 64), 255, np.uint8)
    expected[:h, :w] = _pil_nearest(label, (w, h))
    assert (w, h) != (37, 23) and np.array_equal(out.numpy(), expected[:, ::-1] if flip else expected)
