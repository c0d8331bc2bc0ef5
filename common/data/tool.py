"""Convert a folder or zip of images into a StyleGAN2-ADA dataset, after the official ``dataset_tool.py``.

    python -m common.data.tool --source raw/ffhq/ --dest data/ffhq256.zip --width 256 --height 256 --resize-filter box
    python -m common.data.tool --source photos/ --dest data/pets64.zip --labels-from-subdirs \\
        --transform center-crop --width 64 --height 64

Output (stylegan2_base.md §4): uncompressed PNGs ``00000/img00000000.png`` ... (1000 per sub-folder) and
``dataset.json``, in a folder or a ZIP_STORED ``.zip`` (``--dest`` ending in ``.zip``), written by
:func:`common.data.archive.write_image_archive`. Output images must be square, a power of two, and all of one size.

Sources: a folder (searched recursively) or a ``.zip``; images are the files PIL can read, in sorted relative-path
order (the order :class:`common.data.ImageDataset` uses). The official tool's LSUN lmdb, CIFAR-10 and MNIST readers
are not included. Labels: the source's ``dataset.json`` labels are carried over; or ``--labels-from-subdirs`` gives
every image the integer class of its first-level sub-folder, classes numbered in sorted folder-name order (printed).

Transforms (official semantics): none: resize to ``--width`` x ``--height`` when given; ``center-crop``: the largest
centred square, resized; ``center-crop-wide``: a centred full-width band of aspect width:height, resized to
width x height and pasted in the middle of a black width x width canvas (images narrower than ``--width`` or whose
band is lower than ``--height`` are skipped, as officially). ``--resize-filter`` box or lanczos (default, official);
FFHQ-256 for paper FIDs must use box (stylegan2_base.md §4, issue #283).

Where the official tool differs or is silent:
- every kept image's size and colour mode is read from its header before anything is written, so a size problem
  stops the tool before it writes; grey and colour images mixed are all written as RGB (official: error), and modes
  other than grey/RGB are converted to RGB (alpha dropped);
- ``--max-images N`` keeps the first N images that are written (after ``center-crop-wide`` skips), numbered
  consecutively (official: skipped images leave gaps in the numbering);
- a ``dataset.json`` that labels only some images is an error (official: writes no labels at all);
- an existing ``--dest`` zip or non-empty folder is an error (official: overwrites a zip).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np
import PIL.Image

from common.data.archive import write_image_archive
from common.data.dataset import DatasetError, ImageFiles
from common.logging import Progress

RESIZE_FILTERS = {"box": PIL.Image.Resampling.BOX, "lanczos": PIL.Image.Resampling.LANCZOS}
TRANSFORMS = ("center-crop", "center-crop-wide")


def output_size(
    width: int, height: int, transform: str | None, out_w: int | None, out_h: int | None
) -> tuple[int, int] | None:
    """(width, height) that a ``width`` x ``height`` source image has after ``transform``; None if it is skipped."""
    if transform is None:
        return (out_w, out_h) if out_w is not None and out_h is not None else (width, height)
    assert out_w is not None and out_h is not None
    if transform == "center-crop":
        return out_w, out_h
    if width < out_w or round(out_w * height / width) < out_h:
        return None
    return out_w, out_w


def transform_image(
    image: PIL.Image.Image, transform: str | None, out_w: int | None, out_h: int | None, resample: int
) -> PIL.Image.Image:
    """Apply a transform of the module docstring to an image that :func:`output_size` does not skip."""
    w, h = image.size
    if transform is None:
        if out_w is None or out_h is None or (w, h) == (out_w, out_h):
            return image
        return image.resize((out_w, out_h), resample)
    assert out_w is not None and out_h is not None
    if transform == "center-crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return image.crop((left, top, left + side, top + side)).resize((out_w, out_h), resample)
    band = round(out_w * h / w)
    top = (h - band) // 2
    strip = image.crop((0, top, w, top + band)).resize((out_w, out_h), resample)
    canvas = PIL.Image.new(image.mode, (out_w, out_w))
    canvas.paste(strip, (0, (out_w - out_h) // 2))
    return canvas


def convert_dataset(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    max_images: int | None = None,
    resize_filter: str = "lanczos",
    transform: str | None = None,
    width: int | None = None,
    height: int | None = None,
    labels_from_subdirs: bool = False,
) -> dict[str, Any]:
    """Write ``source`` as a dataset at ``dest`` (see the module docstring); returns a summary dict.

    Raises :class:`DatasetError` naming the problem and the fix for bad options, sources or images.
    """
    start = time.perf_counter()
    _check_options(max_images, resize_filter, transform, width, height)
    dest = Path(dest)
    if dest.is_file() or (dest.is_dir() and any(dest.iterdir())):
        raise DatasetError(f"--dest '{dest}' already exists; delete it or choose another --dest")
    files = ImageFiles(source)
    labels = files.labels()
    classes: list[str] = []
    if labels_from_subdirs:
        if labels is not None:
            raise DatasetError(
                f"source '{source}' has dataset.json labels and --labels-from-subdirs was given; use one of them"
            )
        labels, classes = _subdir_labels(files)

    kept, size, mode, skipped = _scan(files, transform, width, height, max_images)
    resample = RESIZE_FILTERS[resize_filter]

    def images() -> Iterator[np.ndarray]:
        with Progress(total=len(kept), desc="convert", unit="img") as progress:
            for idx in kept:
                image = transform_image(files.open_image(idx).convert(mode), transform, width, height, resample)
                if image.size != size:
                    raise DatasetError(
                        f"image '{files.names[idx]}' decodes to {image.width}x{image.height} after the transform, but "
                        f"{size[0]}x{size[1]} was expected from its header; the file is damaged: delete or replace it"
                    )
                progress.update(1)
                yield np.asarray(image)

    write_image_archive(dest, images(), None if labels is None else labels[kept])
    return {
        "dest": str(dest),
        "count": len(kept),
        "resolution": size[0],
        "channels": 1 if mode == "L" else 3,
        "labels": "none" if labels is None else ("int" if labels.ndim == 1 else f"vector[{labels.shape[1]}]"),
        "classes": classes,
        "skipped": skipped,
        "seconds": time.perf_counter() - start,
    }


def _check_options(
    max_images: int | None, resize_filter: str, transform: str | None, width: int | None, height: int | None
) -> None:
    if resize_filter not in RESIZE_FILTERS:
        raise DatasetError(f"--resize-filter must be one of {sorted(RESIZE_FILTERS)}, got '{resize_filter}'")
    if transform is not None and transform not in TRANSFORMS:
        raise DatasetError(f"--transform must be one of {list(TRANSFORMS)}, got '{transform}'")
    if max_images is not None and max_images < 1:
        raise DatasetError(f"--max-images must be at least 1, got {max_images}")
    if (width is None) != (height is None):
        raise DatasetError("give both --width and --height (or neither, to keep the source size)")
    if width is None or height is None:
        if transform is not None:
            raise DatasetError(f"--transform {transform} needs --width and --height")
        return
    if transform == "center-crop-wide":
        if height > width:
            raise DatasetError(f"--transform center-crop-wide needs --height <= --width, got {width}x{height}")
        _check_output_size(width, width)
    else:
        _check_output_size(width, height)


def _check_output_size(width: int, height: int) -> None:
    if width != height:
        raise DatasetError(
            f"output images must be square, got {width}x{height}: give equal --width and --height "
            "(--transform center-crop keeps the aspect ratio)"
        )
    if width < 1 or width & (width - 1):
        lower = 1 << (width.bit_length() - 1) if width > 0 else 1
        raise DatasetError(
            f"output resolution must be a power of two, got {width}x{height}: "
            f"pass --width {lower} --height {lower} (or {2 * lower})"
        )


def _subdir_labels(files: ImageFiles) -> tuple[np.ndarray, list[str]]:
    """Integer class of each image = rank of its first-level folder among the sorted folder names."""
    at_root = [name for name in files.names if "/" not in name]
    if at_root:
        raise DatasetError(
            f"--labels-from-subdirs needs every image inside a first-level class folder, but '{at_root[0]}' "
            f"(and {len(at_root) - 1} more) lie directly in the source root: move them into a class folder"
        )
    folders = [name.split("/", 1)[0] for name in files.names]
    classes = sorted(set(folders))
    index = {name: i for i, name in enumerate(classes)}
    return np.asarray([index[folder] for folder in folders], dtype=np.int64), classes


def _scan(
    files: ImageFiles, transform: str | None, width: int | None, height: int | None, max_images: int | None
) -> tuple[list[int], tuple[int, int], str, int]:
    """Read image headers: the kept indices, their common output size, the output mode, the number skipped."""
    kept: list[int] = []
    sizes: list[tuple[int, int]] = []
    any_colour = False
    skipped = 0
    with Progress(total=len(files.names), desc="scan", unit="img") as progress:
        for idx in range(len(files.names)):
            w, h, mode = files.image_header(idx)
            progress.update(1)
            size = output_size(w, h, transform, width, height)
            if size is None:
                skipped += 1
                continue
            if sizes and size != sizes[0]:
                raise DatasetError(
                    f"image '{files.names[idx]}' is {w}x{h} (output {size[0]}x{size[1]}) but '{files.names[kept[0]]}' "
                    f"gives {sizes[0][0]}x{sizes[0][1]}; all output images must have one size: pass --width and "
                    "--height (add --transform center-crop to keep the aspect ratio)"
                )
            kept.append(idx)
            sizes.append(size)
            any_colour |= mode == "RGB"
            if max_images is not None and len(kept) == max_images:
                break
    if not kept:
        raise DatasetError(
            f"--transform center-crop-wide skipped all {skipped} images of '{files.path}': they are narrower than "
            f"--width {width} or their band is lower than --height {height}; use smaller sizes"
        )
    _check_output_size(*sizes[0])
    return kept, sizes[0], "RGB" if any_colour else "L", skipped


_HELP = """Convert a folder or zip of images into a StyleGAN2-ADA dataset (folder, or .zip for --dest *.zip).

\b
python -m common.data.tool --source raw/ --dest data/ffhq256.zip --width 256 --height 256 --resize-filter box
python -m common.data.tool --source photos/ --dest data/pets64.zip --labels-from-subdirs \\
    --transform center-crop --width 64 --height 64

Output images must be square, a power of two and of one size. The source's dataset.json labels are carried over.
See the docstring of common/data/tool.py for the transforms and the differences from the official dataset_tool.py.
"""


@click.command(help=_HELP)
@click.option("--source", required=True, metavar="PATH", help="Folder (recursive) or .zip of images.")
@click.option("--dest", required=True, metavar="PATH", help="Output .zip, or folder for any other name.")
@click.option("--max-images", type=int, default=None, help="Write at most this many images.")
@click.option("--resize-filter", type=click.Choice(sorted(RESIZE_FILTERS)), default="lanczos", show_default=True)
@click.option("--transform", type=click.Choice(TRANSFORMS), default=None, help="Crop before resizing.")
@click.option("--width", type=int, default=None, help="Output width.")
@click.option("--height", type=int, default=None, help="Output height.")
@click.option("--labels-from-subdirs", is_flag=True, help="Label = index of the first-level folder (sorted names).")
def main(
    source: str,
    dest: str,
    max_images: int | None,
    resize_filter: str,
    transform: str | None,
    width: int | None,
    height: int | None,
    labels_from_subdirs: bool,
) -> None:
    click.echo(f"writing {dest}")
    try:
        summary = convert_dataset(
            source, dest, max_images, resize_filter, transform, width, height, labels_from_subdirs
        )
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
    if summary["classes"]:
        click.echo("classes: " + ", ".join(f"{i}={name}" for i, name in enumerate(summary["classes"])))
    skipped = f", skipped {summary['skipped']} too small for center-crop-wide" if summary["skipped"] else ""
    click.echo(
        f"wrote {summary['count']} images ({summary['resolution']}x{summary['resolution']}, "
        f"{summary['channels']} channel(s), labels: {summary['labels']}{skipped}) to {summary['dest']} "
        f"in {summary['seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
