"""Image datasets in the StyleGAN2-ADA format: a folder or zip of images with optional ``dataset.json`` labels.

Semantics follow the official ``training/dataset.py: ImageFolderDataset`` (stylegan2_base.md §4):

- the images are the files whose extension PIL knows, found recursively, sorted by relative path ('/' separated);
- grey images give one channel, colour images three; ``__getitem__`` returns uint8 CHW arrays;
- ``dataset.json`` at the root holds ``{"labels": [["00000/img00000000.png", 6], ...]}`` (or ``"labels": null``);
  integer labels become one-hot vectors of size ``max + 1``, list labels float32 vectors;
- ``max_size`` keeps a seeded random subset (``np.random.RandomState(seed)`` shuffle, first ``max_size``, sorted),
  applied before ``xflip``, which appends mirrored copies of every kept image.

Where this module is stricter than the official code (which raises bare ``IOError``/``KeyError``/``AssertionError``),
bad input raises :class:`DatasetError` with a message that names the file, the problem and the fix:
missing path, not a folder or zip, no images, non-square images, a resolution other than the requested one, images
of different sizes, corrupt files, ``use_labels`` without labels, and a ``dataset.json`` that lists images the
dataset lacks or misses images it has. Two further deviations: PIL modes other than grey and RGB (palette, RGBA,
CMYK, ...) are converted to RGB (alpha dropped) instead of yielding palette indices or 4 channels, and macOS zip
debris (``__MACOSX/``, ``._*`` files) is ignored.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import PIL.Image
import torch

LABELS_FILE = "dataset.json"
_GREY_MODES = ("1", "L", "LA")  # PIL modes read as one channel; every other mode is converted to RGB
_MAKE_HINT = "python -m common.data.tool --source ... --dest DATASET.zip"


class DatasetError(Exception):
    """A dataset that cannot be used as given; the message names the problem and how to fix it."""


def is_image_name(name: str) -> bool:
    """Whether ``name`` has an extension PIL can decode and is not macOS zip debris (``__MACOSX/``, ``._*``)."""
    PIL.Image.init()
    path = PurePosixPath(name)
    if path.parts[:1] == ("__MACOSX",) or path.name.startswith("._"):
        return False
    return path.suffix.lower() in PIL.Image.EXTENSION


class ImageFiles:
    """The image files of a dataset folder or ``.zip``: sorted names, decoding, and ``dataset.json`` labels.

    The zip is opened lazily and re-opened in every process that reads (DataLoader workers, forked or spawned),
    because a zip handle inherited across ``fork`` shares one file offset between processes.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1
        if self.path.is_dir():
            self.is_zip = False
            all_names = [
                Path(root, file).relative_to(self.path).as_posix()
                for root, _dirs, files in os.walk(self.path)
                for file in files
            ]
        elif self.path.is_file() and self.path.suffix.lower() == ".zip":
            self.is_zip = True
            all_names = [name for name in self._zipfile().namelist() if not name.endswith("/")]
        elif self.path.exists():
            raise DatasetError(f"dataset '{self.path}' is neither a folder nor a .zip file; make one with {_MAKE_HINT}")
        else:
            raise DatasetError(
                f"dataset path '{self.path}' does not exist; check the path, or make the dataset with {_MAKE_HINT}"
            )
        self._all_names = set(all_names)
        self.names = sorted(name for name in all_names if is_image_name(name))
        if not self.names:
            raise DatasetError(
                f"no image files found in '{self.path}' (searched recursively for extensions PIL can read, "
                "e.g. .png .jpg); point the path at the folder or zip that holds the images"
            )

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as err:
                raise DatasetError(
                    f"cannot open '{self.path}' as a zip file ({err}); re-create or re-copy it"
                ) from None
            self._zip_pid = os.getpid()
        return self._zip

    def open(self, name: str) -> IO[bytes]:
        """A binary file object for ``name`` (relative, '/' separated). Raises :class:`DatasetError` if unreadable."""
        try:
            if self.is_zip:
                return self._zipfile().open(name, "r")
            return open(self.path / name, "rb")
        except (OSError, KeyError, zipfile.BadZipFile) as err:
            raise DatasetError(f"cannot read '{name}' in dataset '{self.path}': {err}") from None

    def open_image(self, idx: int) -> PIL.Image.Image:
        """Decoded image ``idx`` of :attr:`names`, converted to mode 'L' (grey) or 'RGB'.

        A corrupt, truncated or unreadable file raises :class:`DatasetError` naming the file.
        """
        name = self.names[idx]
        try:
            with self.open(name) as file:
                image = PIL.Image.open(io.BytesIO(file.read()))
                image.load()
            return image.convert(_target_mode(image.mode))
        except DatasetError:
            raise
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
            raise DatasetError(
                f"cannot decode image '{name}' in dataset '{self.path}' ({type(err).__name__}: {err}); "
                "the file is corrupt or not an image: delete or replace it"
            ) from None

    def image_header(self, idx: int) -> tuple[int, int, str]:
        """``(width, height, mode)`` of image ``idx`` from its header only (fast), mode 'L' or 'RGB'."""
        name = self.names[idx]
        try:
            with self.open(name) as file, PIL.Image.open(file) as image:
                return image.width, image.height, _target_mode(image.mode)
        except DatasetError:
            raise
        except Exception as err:
            raise DatasetError(
                f"cannot read image '{name}' in dataset '{self.path}' ({type(err).__name__}: {err}); "
                "the file is corrupt or not an image: delete or replace it"
            ) from None

    def load_image(self, idx: int) -> np.ndarray:
        """Image ``idx`` as a uint8 (C, H, W) array, C = 1 (grey) or 3."""
        pixels = np.asarray(self.open_image(idx))
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        return np.array(pixels.transpose(2, 0, 1), order="C")  # a writable copy (PIL's buffer is read-only)

    def labels(self) -> np.ndarray | None:
        """The ``dataset.json`` labels of :attr:`names`, or None without the file or with ``"labels": null``.

        Returns int64 (N,) class indices or float32 (N, D) vectors. Raises :class:`DatasetError` if the file is not
        valid JSON, lists images the dataset lacks, misses some of its images, or mixes label kinds.
        """
        if LABELS_FILE not in self._all_names:
            return None
        where = f"'{LABELS_FILE}' of dataset '{self.path}'"
        with self.open(LABELS_FILE) as file:
            try:
                meta = json.load(file)
            except (ValueError, UnicodeDecodeError) as err:
                raise DatasetError(f"{where} is not valid JSON ({err}); fix or delete it") from None
        if not isinstance(meta, dict) or "labels" not in meta:
            raise DatasetError(f'{where} has no \'labels\' key; expected {{"labels": [["name.png", 0], ...]}}')
        if meta["labels"] is None:
            return None
        entries = meta["labels"]
        if not isinstance(entries, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) for e in entries
        ):
            raise DatasetError(f"{where}: 'labels' must be a list of [relative_path, label] pairs")
        by_name = {name.replace("\\", "/"): value for name, value in entries}
        unknown = sorted(set(by_name) - set(self.names))
        if unknown:
            raise DatasetError(
                f"{where} lists {len(unknown)} image(s) that are not in the dataset, e.g. '{unknown[0]}'; the dataset "
                f"is incomplete or the labels belong to another dataset: re-copy it or re-make it with {_MAKE_HINT}"
            )
        unlabelled = [name for name in self.names if name not in by_name]
        if unlabelled:
            raise DatasetError(
                f"{where} has no label for {len(unlabelled)} of {len(self.names)} images, e.g. '{unlabelled[0]}'; "
                "add their labels, or delete the file / train without labels"
            )
        return _label_array([by_name[name] for name in self.names], where)

    def close(self) -> None:
        """Close the zip handle if this process opened one (it is re-opened on the next read)."""
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, _zip=None, _zip_pid=-1)


def _target_mode(mode: str) -> str:
    return "L" if mode in _GREY_MODES else "RGB"


def _is_number(value: Any, integer: bool = False) -> bool:
    kinds = int if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool)  # JSON true/false are not labels


def _label_array(values: list[Any], where: str) -> np.ndarray:
    """int64 (N,) for non-negative integer labels, float32 (N, D) for equal-length number lists."""
    if all(_is_number(v, integer=True) for v in values):
        if min(values) < 0:
            raise DatasetError(f"{where}: integer labels are class indices and must be >= 0, got {min(values)}")
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, list) and all(_is_number(x) for x in v) for v in values):
        lengths = sorted({len(v) for v in values})
        if len(lengths) > 1:
            raise DatasetError(f"{where}: label vectors must all have one length, got lengths {lengths}")
        array = np.asarray(values, dtype=np.float32).reshape(len(values), lengths[0])
        bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
        if len(bad):
            raise DatasetError(f"{where}: label vectors must be finite numbers; {len(bad)} hold NaN or infinity "
                               f"(the first is label #{bad[0]}): fix or drop them in dataset.json")
        return array
    raise DatasetError(
        f"{where}: every label must be a non-negative integer class index, or every label a list of numbers "
        "(one length for all)"
    )


class ImageDataset(torch.utils.data.Dataset):
    """A StyleGAN2-ADA image dataset: a folder or zip of images with optional ``dataset.json`` labels.

    ``ds[i]`` is ``(image, label)``: uint8 (C, H, W) and float32 (label_dim,) (one-hot for integer labels, shape
    (0,) without labels). ``resolution`` (if given) must equal the images' size; ``use_labels`` requires labels;
    ``max_size`` keeps a seeded random subset of ``random_seed``; ``xflip`` appends mirrored copies.
    Only the first image is decoded here; a later image of another size or a corrupt file raises
    :class:`DatasetError` naming it when it is read.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        resolution: int | None = None,
        use_labels: bool = False,
        max_size: int | None = None,
        xflip: bool = False,
        random_seed: int = 0,
    ) -> None:
        self._files = ImageFiles(path)
        self.path = str(path)
        self.name = self._files.path.stem if self._files.is_zip else self._files.path.name
        first = self._files.load_image(0)
        channels, height, width = first.shape
        if height != width:
            raise DatasetError(
                f"images of dataset '{self.path}' are {width}x{height} (first: '{self._files.names[0]}'), not square; "
                "make a square dataset with python -m common.data.tool --transform center-crop --width R --height R"
            )
        if resolution is not None and height != resolution:
            raise DatasetError(
                f"images of dataset '{self.path}' are {width}x{height} but resolution {resolution} was requested; "
                f"set the resolution to {height} (or leave it unset), or re-make the dataset at {resolution}x"
                f"{resolution} with python -m common.data.tool --width {resolution} --height {resolution}"
            )
        self._image_shape = [int(channels), int(height), int(width)]

        self._raw_labels: np.ndarray | None = None
        self._label_dim = 0
        if use_labels:
            self._raw_labels = self._files.labels()
            if self._raw_labels is None:
                raise DatasetError(
                    f"labels were requested but dataset '{self.path}' has no '{LABELS_FILE}' labels; turn conditioning "
                    "off, or re-make the dataset with labels (e.g. python -m common.data.tool --labels-from-subdirs)"
                )
            # official: one-hot size = max + 1 over all images, before subsetting
            integer = self._raw_labels.dtype == np.int64
            self._label_dim = int(self._raw_labels.max()) + 1 if integer else int(self._raw_labels.shape[1])
        self._files.close()  # DataLoader workers open their own handle

        num_raw = len(self._files.names)
        if max_size is not None and max_size < 1:
            raise DatasetError(f"max_size must be at least 1 (or None for all {num_raw} images), got {max_size}")
        self._max_size = max_size if max_size is not None and max_size < num_raw else None
        self._random_seed = random_seed
        raw_idx = np.arange(num_raw, dtype=np.int64)
        if self._max_size is not None:
            # official: RandomState(random_seed).shuffle(arange(N)), keep the first max_size, sort
            raw_idx = np.sort(np.random.RandomState(random_seed).permutation(num_raw)[: self._max_size])
        self._xflip = np.zeros(len(raw_idx), dtype=bool)
        if xflip:
            raw_idx = np.concatenate([raw_idx, raw_idx])
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])
        self._raw_idx = raw_idx
        self._use_xflip = xflip

    def __len__(self) -> int:
        return len(self._raw_idx)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        raw = int(self._raw_idx[idx])
        image = self._files.load_image(raw)
        if list(image.shape) != self._image_shape:
            c, h, w = image.shape
            ec, eh, ew = self._image_shape
            raise DatasetError(
                f"image '{self._files.names[raw]}' of dataset '{self.path}' is {w}x{h} with {c} channel(s) but the "
                f"dataset's first image is {ew}x{eh} with {ec}; every image must have one size and colour mode: "
                f"re-make the dataset with {_MAKE_HINT} --width {ew} --height {eh}"
            )
        if self._xflip[idx]:
            image = np.ascontiguousarray(image[:, :, ::-1])
        return image, self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        """Label of item ``idx``: float32 (label_dim,), one-hot for integer labels, (0,) without labels."""
        if self._raw_labels is None:
            return np.zeros([0], dtype=np.float32)
        label = self._raw_labels[self._raw_idx[idx]]
        if self._raw_labels.dtype == np.int64:
            onehot = np.zeros([self._label_dim], dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.copy()

    @property
    def raw_indices(self) -> np.ndarray:
        """int64 (len(self),): the index into the sorted image files of each item (subset, then x-flip copies)."""
        return self._raw_idx.copy()

    @property
    def image_names(self) -> list[str]:
        """All image files of the dataset (before subsetting), relative '/' paths in sorted order."""
        return list(self._files.names)

    @property
    def image_shape(self) -> list[int]:
        """[C, H, W]."""
        return list(self._image_shape)

    @property
    def num_channels(self) -> int:
        return self._image_shape[0]

    @property
    def resolution(self) -> int:
        return self._image_shape[1]

    @property
    def label_shape(self) -> list[int]:
        """[label_dim]: [max + 1] for integer labels (over all images, as the official code), [D] for vectors."""
        return [self._label_dim]

    @property
    def label_dim(self) -> int:
        return self._label_dim

    @property
    def has_labels(self) -> bool:
        return self.label_dim != 0

    def identity(self) -> dict[str, Any]:
        """What determines this dataset's images, as JSON-serialisable values, e.g. for caching metric statistics.

        Keys: ``path`` (absolute), ``modified`` (the zip's size and mtime in ns, or a digest of (name, size, mtime in
        ns) of every image and the labels file of a folder: re-making, ``cp -p``-ing over, swapping or renaming
        files at the same path changes it), ``num_images`` (image files before
        subsetting), ``resolution``, ``num_channels``, ``max_size`` and ``random_seed`` (both None unless a subset
        was taken), ``xflip`` and ``count`` (``len(self)``). Labels are not part of it. Use
        ``json.dumps(ds.identity(), sort_keys=True)`` (or a hash of it) as a cache key.
        """
        root = self._files.path
        if self._files.is_zip:
            stat = root.stat()
            modified = f"{stat.st_size}:{stat.st_mtime_ns}"
        else:
            files = [*self._files.names, *([LABELS_FILE] if (root / LABELS_FILE).is_file() else [])]
            digest = hashlib.sha256()
            for name in files:
                stat = (root / name).stat()
                digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            modified = digest.hexdigest()[:16]
        return {
            "path": str(root.resolve()),
            "modified": modified,
            "num_images": len(self._files.names),
            "resolution": self.resolution,
            "num_channels": self.num_channels,
            "max_size": self._max_size,
            "random_seed": self._random_seed if self._max_size is not None else None,
            "xflip": self._use_xflip,
            "count": len(self),
        }

    def close(self) -> None:
        """Close the zip handle of this process (reading again re-opens it)."""
        self._files.close()
