"""InsLoc's pretraining pairs: the same foreground in both views at their boxes, flips move the box, reproducible
composition draws per (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from common.data.dataset import ImageFiles
from insloc.data import MEAN, STD, CompositionPairs, flip, normalise


def _folder(tmp_path, count=4):
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = tmp_path / f"n0{i}"
        folder.mkdir()
        size = (int(rng.integers(60, 120)), int(rng.integers(60, 120)))
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"img{i}.JPEG", quality=95)
    return ImageFiles(tmp_path)


def test_flip_moves_the_box_with_the_image():
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    image[2:5, 3:8] = 255
    flipped, box = flip(image, np.array([3.0, 2.0, 8.0, 5.0], dtype=np.float32))
    assert box.tolist() == [12.0, 2.0, 17.0, 5.0]
    assert (flipped[2:5, 12:17] == 255).all() and flipped.sum() == image.sum()


def test_normalise_is_mmdets_rgb_normalize():
    image = np.full((2, 2, 3), 200, dtype=np.uint8)
    x = normalise(image)
    assert x.shape == (3, 2, 2)
    assert torch.allclose(x[:, 0, 0], (200 - torch.tensor(MEAN)) / torch.tensor(STD))


def test_pairs_are_reproducible_per_epoch_and_boxes_lie_inside(tmp_path):
    pairs = CompositionPairs(_folder(tmp_path), seed=3)
    assert len(pairs) == 4
    torch.manual_seed(0)
    a = pairs[1]
    torch.manual_seed(0)
    b = pairs[1]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    query, q_box, key, k_box = a
    assert query.shape == key.shape == (3, 256, 256) and q_box.shape == k_box.shape == (4,)
    for box in (q_box, k_box):
        assert 0 <= box[0] < box[2] <= 256 and 0 <= box[1] < box[3] <= 256
    torch.manual_seed(1)  # the item's own seed decides, not the global RNG
    assert all(torch.equal(x, y) for x, y in zip(pairs[1], a))
    later = pairs[1 + len(pairs)]  # the same image in epoch 1
    assert not torch.equal(later[1], q_box) or not torch.equal(later[3], k_box)


def test_the_official_list_file_and_its_errors(tmp_path):
    from common.data.dataset import DatasetError
    from insloc.data import ImageList, image_source

    (tmp_path / "train").mkdir()
    files = _folder(tmp_path / "train")
    (tmp_path / "train.txt").write_text("".join(f"{name} 0\n" for name in files.names) + "\n")
    images = image_source(tmp_path / "train.txt", tmp_path / "train")
    assert isinstance(images, ImageList) and images.names == files.names
    assert np.array_equal(np.asarray(images.open_image(2)), np.asarray(files.open_image(2).convert("RGB")))
    assert len(CompositionPairs(images)) == 4
    (tmp_path / "bad.txt").write_text("n00/missing.JPEG\n")
    with pytest.raises(DatasetError, match="missing.JPEG"):
        ImageList(tmp_path / "bad.txt", tmp_path / "train").open_image(0)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DatasetError, match="names no image"):
        ImageList(tmp_path / "empty.txt")


def test_colour_strength_scales_the_official_pixel_augmentation():
    from insloc.data import PixelAugmentation

    def ranges(aug):
        (apply, grey) = aug.colour.transforms
        jitter = apply.transforms[0]
        return jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue, apply.p, grey.p

    assert ranges(PixelAugmentation()) == ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1), 0.8, 0.2)
    assert ranges(PixelAugmentation(0.5))[:4] == ((0.8, 1.2), (0.8, 1.2), (0.8, 1.2), (-0.05, 0.05))
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    off = PixelAugmentation(0.0)
    for seed in range(8):  # strength 0: colours untouched; only the blur (p 0.5) changes pixels
        rng = np.random.default_rng(seed)
        blurred = np.random.default_rng(seed).random() < 0.5
        assert np.array_equal(off(image, rng), image) != blurred


def test_build_dataset_passes_the_colour_strength_to_both_methods():
    from common.config import load_config
    from insloc.config import InsLocConfig, config_path
    from insloc.training import build_dataset

    for method in ("insloc", "moco"):
        cfg = load_config(InsLocConfig, config_path("tiny"), [f"method={method}", "data.synthetic_count=4",
                                                             "data.colour_strength=0.25"])
        dataset = build_dataset(cfg)
        pixels = dataset.pixels if method == "insloc" else dataset.views.pixels
        assert pixels.colour.transforms[1].p == pytest.approx(0.05)
