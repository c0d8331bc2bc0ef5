"""python -m common.data.tool: folder/zip -> dataset round trips, transforms, labels, and its error messages."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from common.data import DatasetError, ImageDataset
from common.data.tool import convert_dataset, main


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _images(n: int, h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, np.ndarray, list[int]]:
    """A user folder: nested, non-official names, dataset.json int labels; returned in sorted-name order."""
    root = tmp_path / "raw"
    names = ["cats/b.png", "cats/a.png", "dogs/x/1.png", "dogs/0.png", "z.png"]
    images = _images(len(names))
    labels = [4, 0, 2, 1, 3]
    for name, image in zip(names, images):
        _save(root / name, image)
    (root / "dataset.json").write_text(json.dumps({"labels": [[n, y] for n, y in zip(names, labels)]}))
    order = sorted(range(len(names)), key=names.__getitem__)
    return root, images[order], [labels[i] for i in order]


def _assert_dataset(path: Path, images: np.ndarray, labels: list[int] | None) -> None:
    ds = ImageDataset(path, use_labels=labels is not None)
    assert len(ds) == len(images)
    for i in range(len(ds)):
        image, label = ds[i]
        np.testing.assert_array_equal(image, images[i].transpose(2, 0, 1))
        if labels is not None:
            np.testing.assert_array_equal(label, np.eye(ds.label_dim, dtype=np.float32)[labels[i]])


def test_folder_to_zip_to_dataset_round_trip(source, tmp_path):
    root, images, labels = source
    result = CliRunner().invoke(main, ["--source", str(root), "--dest", str(tmp_path / "out.zip")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"writing {tmp_path / 'out.zip'}\n")
    assert f"wrote 5 images (8x8, 3 channel(s), labels: int) to {tmp_path / 'out.zip'}" in result.output
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert zf.namelist()[:2] == ["00000/img00000000.png", "00000/img00000001.png"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    _assert_dataset(tmp_path / "out.zip", images, labels)
    _assert_dataset(root, images, labels)  # the source folder itself is a dataset too

    # zip -> folder keeps pixels and labels as well
    convert_dataset(tmp_path / "out.zip", tmp_path / "again")
    _assert_dataset(tmp_path / "again", images, labels)


def test_max_images_and_labels_from_subdirs(source, tmp_path):
    root, images, _ = source
    (root / "dataset.json").unlink()
    (root / "z.png").unlink()
    result = CliRunner().invoke(
        main, ["--source", str(root), "--dest", str(tmp_path / "d.zip"), "--labels-from-subdirs", "--max-images", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "classes: 0=cats, 1=dogs" in result.output
    _assert_dataset(tmp_path / "d.zip", images[:3], [0, 0, 1])  # cats/a, cats/b, dogs/0


def test_resize_filters_and_crops(tmp_path):
    small = _images(1, 4, 4)[0]
    big = np.kron(small, np.ones((2, 2, 1), np.uint8))  # 8x8, every pixel doubled
    _save(tmp_path / "big/a.png", big)
    convert_dataset(tmp_path / "big", tmp_path / "box.zip", resize_filter="box", width=4, height=4)
    _assert_dataset(tmp_path / "box.zip", small[None], None)  # box of 2x2 equal pixels is exact
    convert_dataset(tmp_path / "big", tmp_path / "lz.zip", width=4, height=4)
    expected = np.asarray(Image.fromarray(big).resize((4, 4), Image.Resampling.LANCZOS))
    _assert_dataset(tmp_path / "lz.zip", expected[None], None)

    wide = _images(1, 8, 12)[0]
    _save(tmp_path / "wide/a.png", wide)
    convert_dataset(tmp_path / "wide", tmp_path / "crop.zip", transform="center-crop", width=8, height=8)
    _assert_dataset(tmp_path / "crop.zip", wide[None, :, 2:10], None)

    band = np.kron(_images(1, 8, 8, seed=1)[0], np.ones((1, 2, 1), np.uint8))  # 8 rows x 16 columns
    _save(tmp_path / "band/a.png", band)
    _save(tmp_path / "band/b_narrow.png", _images(1, 8, 4)[0])  # narrower than --width: skipped
    summary = convert_dataset(
        tmp_path / "band", tmp_path / "ccw.zip", transform="center-crop-wide", width=8, height=4, resize_filter="box"
    )
    assert (summary["count"], summary["skipped"]) == (1, 1)
    canvas = np.zeros((8, 8, 3), np.uint8)
    canvas[2:6] = band[2:6, ::2]  # rows (8 - round(8 * 8 / 16)) // 2 .. +4, columns halved, pasted centred
    _assert_dataset(tmp_path / "ccw.zip", canvas[None], None)


def test_mixed_grey_and_colour_become_rgb(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, size=(8, 8), dtype=np.uint8)
    colour = _images(1)[0]
    _save(tmp_path / "src/a.png", grey)
    _save(tmp_path / "src/b.png", colour)
    summary = convert_dataset(tmp_path / "src", tmp_path / "d.zip")
    assert summary["channels"] == 3
    _assert_dataset(tmp_path / "d.zip", np.stack([np.repeat(grey[..., None], 3, axis=2), colour]), None)


@pytest.mark.parametrize(
    ("sizes", "options", "message"),
    [
        ([(6, 8)], {}, r"output images must be square, got 8x6"),
        ([(12, 12)], {}, r"power of two, got 12x12: pass --width 8 --height 8 \(or 16\)"),
        ([(8, 8), (16, 16)], {}, r"image 'b\.png' is 16x16 .* but 'a\.png' gives 8x8; .*pass --width and --height"),
        ([(8, 8)], {"width": 8}, "give both --width and --height"),
        ([(8, 8)], {"transform": "center-crop"}, "--transform center-crop needs --width and --height"),
        ([(8, 8)], {"width": 8, "height": 4}, r"must be square, got 8x4"),
        ([(8, 8)], {"max_images": 0}, "--max-images must be at least 1"),
        ([(4, 4)], {"transform": "center-crop-wide", "width": 8, "height": 4}, "skipped all 1 images"),
    ],
)
def test_bad_sizes_and_options(tmp_path, sizes, options, message):
    for name, (h, w) in zip("ab", sizes):
        _save(tmp_path / f"src/{name}.png", _images(1, h, w)[0])
    with pytest.raises(DatasetError, match=message):
        convert_dataset(tmp_path / "src", tmp_path / "d.zip", **options)
    assert not (tmp_path / "d.zip").exists()


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_source_image_is_named_and_nothing_is_left(source, tmp_path, kind):
    root, _, _ = source
    bad = root / "dogs/0.png"
    bad.write_bytes(b"\x00garbage" if kind == "garbage" else bad.read_bytes()[:120])
    result = CliRunner().invoke(main, ["--source", str(root), "--dest", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "Error: cannot" in result.output and "image 'dogs/0.png'" in result.output
    assert "corrupt or not an image" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_source_and_dest_errors(source, tmp_path):
    root, _, _ = source
    runner = CliRunner()
    result = runner.invoke(main, ["--source", str(tmp_path / "missing"), "--dest", str(tmp_path / "d.zip")])
    assert result.exit_code == 1 and "does not exist" in result.output
    (tmp_path / "d.zip").write_bytes(b"")
    with pytest.raises(DatasetError, match="already exists; delete it or choose another --dest"):
        convert_dataset(root, tmp_path / "d.zip")
    with pytest.raises(DatasetError, match="has dataset.json labels and --labels-from-subdirs was given"):
        convert_dataset(root, tmp_path / "e.zip", labels_from_subdirs=True)
    (root / "dataset.json").unlink()
    with pytest.raises(DatasetError, match=r"'z\.png' \(and 0 more\) lie directly in the source root"):
        convert_dataset(root, tmp_path / "e.zip", labels_from_subdirs=True)
    (root / "dataset.json").write_text(json.dumps({"labels": [["z.png", 1]]}))
    with pytest.raises(DatasetError, match=r"has no label for 4 of 5 images, e.g. 'cats/a\.png'"):
        convert_dataset(root, tmp_path / "e.zip")
