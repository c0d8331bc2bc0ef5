"""ImageDataset: the StyleGAN2-ADA folder/zip format, subsets, x-flips, identity, and the errors users hit."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.data import DatasetError, ImageDataset, digits_dataset, infinite_loader, shapes_dataset, write_image_archive


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()


def _random_images(n: int, size: int = 8, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (n, size, size, channels) if channels > 1 else (n, size, size)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def labelled_zip(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    images = _random_images(10)
    labels = np.array([3, 0, 1, 1, 2, 0, 3, 2, 1, 0])
    return write_image_archive(tmp_path / "tiny.zip", images, labels), images, labels


def test_reads_official_layout_with_onehot_labels(labelled_zip):
    path, images, labels = labelled_zip
    ds = ImageDataset(path, resolution=8, use_labels=True)
    assert (len(ds), ds.name, ds.resolution, ds.num_channels, ds.image_shape) == (10, "tiny", 8, 3, [3, 8, 8])
    assert (ds.label_shape, ds.label_dim, ds.has_labels) == ([4], 4, True)
    for i in range(10):
        image, label = ds[i]
        assert image.dtype == np.uint8 and image.flags.c_contiguous
        np.testing.assert_array_equal(image, images[i].transpose(2, 0, 1))
        np.testing.assert_array_equal(label, np.eye(4, dtype=np.float32)[labels[i]])
        assert label.dtype == np.float32


def test_unlabelled_grey_folder_and_vector_labels(tmp_path):
    grey = _random_images(3, channels=1)
    ds = ImageDataset(write_image_archive(tmp_path / "grey", grey))  # a folder this time
    image, label = ds[2]
    np.testing.assert_array_equal(image, grey[2][None])
    assert (ds.num_channels, ds.label_dim, ds.has_labels, label.shape, label.dtype) == (1, 0, False, (0,), np.float32)

    vectors = [[0.5, -1.0], [2.0, 0.25], [0.0, 1.0]]
    ds = ImageDataset(write_image_archive(tmp_path / "vec.zip", grey, vectors), use_labels=True)
    assert ds.label_dim == 2
    np.testing.assert_array_equal(ds.get_label(1), np.array([2.0, 0.25], dtype=np.float32))


def test_images_sorted_by_relative_path_recursively(tmp_path):
    names = ["b/1.png", "a/2.jpg.png", "a-b.png", "10.png", "9.png", "a/sub/0.PNG", "notes.txt"]
    for value, name in enumerate(names):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(_png(np.full((4, 4), value, np.uint8)) if name.lower().endswith("png") else b"x")
    ds = ImageDataset(tmp_path)
    expected = ["10.png", "9.png", "a-b.png", "a/2.jpg.png", "a/sub/0.PNG", "b/1.png"]  # plain string order
    assert ds.image_names == expected
    assert [int(ds[i][0][0, 0, 0]) for i in range(len(ds))] == [names.index(n) for n in expected]


def test_max_size_subset_is_seeded_and_matches_official(labelled_zip):
    path, images, _ = labelled_zip
    official = np.arange(10, dtype=np.int64)
    np.random.RandomState(7).shuffle(official)  # training/dataset.py: shuffle, first max_size, sorted
    ds = ImageDataset(path, max_size=4, random_seed=7)
    np.testing.assert_array_equal(ds.raw_indices, np.sort(official[:4]))
    # pinned: RandomState(0).shuffle(arange(10))[:4] sorted
    np.testing.assert_array_equal(ImageDataset(path, max_size=4, random_seed=0).raw_indices, [2, 4, 8, 9])
    np.testing.assert_array_equal(ImageDataset(path, max_size=4, random_seed=7).raw_indices, ds.raw_indices)
    assert not np.array_equal(ImageDataset(path, max_size=4, random_seed=8).raw_indices, ds.raw_indices)
    for i, raw in enumerate(ds.raw_indices):
        np.testing.assert_array_equal(ds[i][0], images[raw].transpose(2, 0, 1))
    assert len(ImageDataset(path, max_size=10)) == 10 and ImageDataset(path, max_size=10).identity()["max_size"] is None


def test_xflip_appends_mirrored_copies(labelled_zip):
    path, images, labels = labelled_zip
    ds = ImageDataset(path, use_labels=True, max_size=3, xflip=True)
    assert len(ds) == 6
    np.testing.assert_array_equal(ds.raw_indices[3:], ds.raw_indices[:3])
    for i in range(3):
        np.testing.assert_array_equal(ds[i + 3][0], ds[i][0][:, :, ::-1])
        np.testing.assert_array_equal(ds.get_label(i + 3), ds.get_label(i))


def test_identity_is_stable_and_tracks_what_changes_the_images(labelled_zip):
    path, images, labels = labelled_zip
    base = ImageDataset(path).identity()
    assert json.loads(json.dumps(base)) == base == ImageDataset(path, use_labels=True).identity()  # JSON-able, stable
    assert (base["path"], base["count"], base["resolution"], base["xflip"]) == (str(path.resolve()), 10, 8, False)
    assert ImageDataset(path, xflip=True).identity()["count"] == 20
    assert ImageDataset(path, max_size=5, random_seed=1).identity() != ImageDataset(path, max_size=5).identity()
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 1))  # the dataset re-made at the same path
    assert ImageDataset(path).identity()["modified"] != base["modified"]


def test_folder_identity_sees_swaps_renames_and_copies_that_keep_mtimes(tmp_path):
    folder = write_image_archive(tmp_path / "d", _random_images(3))
    first, second = folder / "00000/img00000000.png", folder / "00000/img00000001.png"
    os.utime(first, ns=(1, 10**18))
    os.utime(second, ns=(1, 10**18))  # same mtimes: the newest mtime and the count cannot tell them apart
    base = ImageDataset(folder).identity()["modified"]
    data0, data1 = first.read_bytes(), second.read_bytes() + b"\0"  # PNG with a trailing byte: another size
    first.write_bytes(data1)
    second.write_bytes(data0)
    for path in (first, second):
        os.utime(path, ns=(1, 10**18))  # as cp -p keeps them
    assert ImageDataset(folder).identity()["modified"] != base
    restored = ImageDataset(folder).identity()["modified"]
    second.rename(folder / "00000/img00000009.png")  # a rename at the same count
    assert ImageDataset(folder).identity()["modified"] != restored


def test_zip_reads_in_dataloader_workers_match_main_process(labelled_zip):
    path, _, _ = labelled_zip
    ds = ImageDataset(path, use_labels=True)
    ds[0]  # the main process now holds a zip handle; forked workers must not share it
    clone = pickle.loads(pickle.dumps(ds))  # what spawned workers receive
    np.testing.assert_array_equal(clone[5][0], ds[5][0])
    plain = infinite_loader(ds, batch_size=4, num_workers=0)
    workers = infinite_loader(ds, batch_size=4, num_workers=2)
    for _ in range(6):
        (x0, c0), (x1, c1) = next(plain), next(workers)
        assert x0.dtype == torch.uint8 and x0.shape == (4, 3, 8, 8) and c0.dtype == torch.float32
        assert torch.equal(x0, x1) and torch.equal(c0, c1)


def test_synthetic_datasets_are_cached_and_readable(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    path = shapes_dataset(num_images=12, resolution=8, seed=3)
    assert path.parent == tmp_path
    stamp = path.stat().st_mtime_ns
    assert shapes_dataset(num_images=12, resolution=8, seed=3) == path and path.stat().st_mtime_ns == stamp
    ds = ImageDataset(path, resolution=8, use_labels=True)
    assert (len(ds), ds.num_channels) == (12, 3) and ds.label_dim <= 4
    digits = ImageDataset(digits_dataset(resolution=8), use_labels=True)
    assert (len(digits), digits.num_channels, digits.label_dim) == (1797, 1, 10)


# ---- errors name the problem and the fix ----


def test_missing_wrong_kind_and_empty_paths(tmp_path):
    with pytest.raises(DatasetError, match=r"'.*nope\.zip' does not exist; .*common\.data\.tool"):
        ImageDataset(tmp_path / "nope.zip")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DatasetError, match="neither a folder nor a .zip"):
        ImageDataset(tmp_path / "x.txt")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="cannot open .*bad.zip' as a zip file"):
        ImageDataset(tmp_path / "bad.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files found in"):
        ImageDataset(tmp_path / "empty")


def test_not_square_and_resolution_mismatch(tmp_path):
    path = write_image_archive(tmp_path / "wide.zip", [np.zeros((4, 8, 3), np.uint8)])
    with pytest.raises(DatasetError, match=r"are 8x4 .*not square; .*--transform center-crop"):
        ImageDataset(path)
    path = write_image_archive(tmp_path / "r8.zip", _random_images(2))
    with pytest.raises(DatasetError, match=r"are 8x8 but resolution 16 was requested; .*--width 16 --height 16"):
        ImageDataset(path, resolution=16)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_image_error_names_the_file(tmp_path, kind):
    images = _random_images(3)
    path = write_image_archive(tmp_path / "d", images)
    bad = path / "00000/img00000001.png"
    bad.write_bytes(b"\x00garbage" if kind == "garbage" else bad.read_bytes()[:200])
    ds = ImageDataset(path)
    np.testing.assert_array_equal(ds[2][0], images[2].transpose(2, 0, 1))
    with pytest.raises(DatasetError, match=r"cannot decode image '00000/img00000001\.png' .*corrupt"):
        ds[1]
    zipped = tmp_path / "d.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for name in ("00000/img00000000.png", "00000/img00000001.png"):
            zf.write(path / name, name)
    with pytest.raises(DatasetError, match=r"cannot decode image '00000/img00000001\.png' in dataset '.*d\.zip'"):
        ImageDataset(zipped)[1]


def test_image_of_another_size_is_named(tmp_path):
    path = write_image_archive(tmp_path / "d", _random_images(2))
    (path / "00000/img00000001.png").write_bytes(_png(_random_images(1, size=16)[0]))
    with pytest.raises(DatasetError, match=r"image '00000/img00000001\.png' .* is 16x16 .* first image is 8x8"):
        ImageDataset(path)[1]


def _with_labels(tmp_path: Path, meta: object) -> Path:
    path = write_image_archive(tmp_path / "d", _random_images(3))
    (path / "dataset.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return path


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"labels": None}, "labels were requested but dataset .* has no 'dataset.json' labels"),
        ("{not json", "'dataset.json' of dataset .* is not valid JSON"),
        ({"classes": []}, "has no 'labels' key"),
        (
            {
                "labels": [
                    ["00000/img00000000.png", 0],
                    ["00000/img00000001.png", 1],
                    ["00000/img00000002.png", 0],
                    ["00000/img00000007.png", 1],
                ]
            },
            r"lists 1 image\(s\) that are not in the dataset, e.g. '00000/img00000007\.png'",
        ),
        (
            {"labels": [["00000/img00000000.png", 0], ["00000/img00000002.png", 1]]},
            r"has no label for 1 of 3 images, e.g. '00000/img00000001\.png'",
        ),
        (
            {"labels": [["00000/img00000000.png", 0], ["00000/img00000001.png", -1], ["00000/img00000002.png", 1]]},
            "integer labels are class indices and must be >= 0, got -1",
        ),
        (
            {"labels": [["00000/img00000000.png", 0], ["00000/img00000001.png", [1.0]], ["00000/img00000002.png", 1]]},
            "every label must be a non-negative integer class index, or every label a list of numbers",
        ),
        (  # json.dumps writes float('nan') as NaN, which json.loads reads back (official code: NaN losses)
            {"labels": [["00000/img00000000.png", [0.5]], ["00000/img00000001.png", [float("nan")]],
                        ["00000/img00000002.png", [float("inf")]]]},
            r"label vectors must be finite numbers; 2 hold NaN or infinity \(the first is label #1\)",
        ),
    ],
)
def test_label_file_errors(tmp_path, meta, message):
    path = _with_labels(tmp_path, meta)
    ImageDataset(path)  # labels are only read when asked for
    with pytest.raises(DatasetError, match=message):
        ImageDataset(path, use_labels=True)


def test_labels_requested_without_label_file(tmp_path):
    path = write_image_archive(tmp_path / "d", _random_images(2))
    (path / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="labels were requested .*--labels-from-subdirs"):
        ImageDataset(path, use_labels=True)


def _write_digits(args: tuple[str, str]) -> int:
    import os

    os.environ["GENFORCE_DATA_DIR"] = args[0]
    from common.data.synthetic import digits_dataset

    return len(ImageDataset(digits_dataset(resolution=int(args[1]))))


def test_concurrent_writers_of_one_dataset_do_not_collide(tmp_path):
    """Four processes generate the same digits zip at once (as torchrun ranks do); each gets the full dataset."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        sizes = pool.map(_write_digits, [(str(tmp_path), "8")] * 4)
    assert sizes == [1797] * 4
    assert not list(tmp_path.glob("*.tmp"))
