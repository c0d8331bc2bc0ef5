"""Offline data helpers: the factors behind shapes() and scikit-learn's sample photos."""

from __future__ import annotations

import numpy as np

from common.data.synthetic import SHAPE_CLASSES, sample_photos, shape_factors, shapes


def test_shape_factors_are_the_factors_of_the_rendered_shapes():
    images, labels, masks = shapes(64, 32, seed=3, return_masks=True)
    factors = shape_factors(64, seed=3)
    assert np.array_equal(factors["shape"], labels)
    assert set(factors) == {"shape", "size", "center", "angle", "foreground", "background"}
    assert factors["size"].min() >= 0.18 and factors["size"].max() <= 0.34
    inside = (factors["center"] >= factors["size"][:, None]) & (factors["center"] <= 1 - factors["size"][:, None])
    assert inside.all()
    grid = (np.arange(32) + 0.5) / 32
    for i in range(64):
        on_shape = masks[i] > 0
        ys, xs = np.nonzero(on_shape)
        if SHAPE_CLASSES[labels[i]] in ("circle", "square", "ring"):  # symmetric: mask centroid = centre
            assert abs(grid[xs].mean() - factors["center"][i, 0]) < 1.5 / 32
            assert abs(grid[ys].mean() - factors["center"][i, 1]) < 1.5 / 32
        fully = (masks[i] > 0) & (np.abs(images[i].astype(float) / 255 - factors["foreground"][i]).max(axis=2) < 0.01)
        assert fully.sum() > 0  # interior pixels carry the foreground colour exactly (up to 8-bit rounding)
        corner = images[i, 0, 0].astype(float) / 255
        assert np.abs(corner - factors["background"][i]).max() < 0.01 or on_shape[0, 0]
    assert np.array_equal(shape_factors(64, seed=3)["angle"], factors["angle"])  # deterministic
    assert not np.array_equal(shape_factors(64, seed=4)["angle"], factors["angle"])


def test_sample_photos_are_the_two_scikit_learn_images_cropped_and_resized():
    photos = sample_photos(32)
    assert list(photos) == ["china.jpg", "flower.jpg"]
    for image in photos.values():
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and image.std() > 10
    assert not np.array_equal(photos["china.jpg"], photos["flower.jpg"])
    big = sample_photos(256)["china.jpg"].astype(float)
    small = big.reshape(32, 8, 32, 8, 3).mean(axis=(1, 3))  # area resize commutes with 8x8 box averaging
    assert np.abs(small - photos["china.jpg"]).mean() < 2.0
