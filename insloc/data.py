"""InsLoc's pretraining data (spec insloc.md §2.1, §4; official ``ImageNetDataset`` + ``CopyAndPaste`` +
``train_pipeline`` of configs/FPN/insloc_fpn_200ep.py): two composites of every image, each with its box.

Per index: the foreground is image ``index``; two backgrounds are drawn uniformly from the same images; each view is
:func:`insloc.composition.compose` then, independently, MoCo v2's pixel augmentation as the official ``PixelAugPil``
(torchvision's ``RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8)``, ``RandomGrayscale(0.2)``, PIL Gaussian blur
of radius U(0.1, 2) with p 0.5), a horizontal flip with p 0.5 (the box flipped too), and mmdet's ``Normalize`` (RGB,
mean 123.675 / 116.28 / 103.53, std 58.395 / 57.12 / 57.375). Images (:func:`image_source`): the official list file
(``train.txt``, one image per line, its first field a path relative to the image root, as ``ImageNetDataset``), or
any folder or zip of images (:class:`common.data.dataset.ImageFiles`, ImageNet's ``train/<wnid>/*.JPEG`` included).

Every draw of an item comes from ``numpy.random.default_rng([seed, epoch, index])`` (torchvision's colour jitter
through torch's RNG seeded from it): the same pair for the same item in any worker and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image, ImageFilter
from torch import Tensor
from torchvision import transforms

from common.data.dataset import DatasetError, ImageFiles
from insloc.composition import CompositionConfig, compose

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


class ImageList:
    """The official ``ImageNetDataset`` input: a text file, one image per line, the first field a path relative to
    ``root`` (``img_prefix``)."""

    def __init__(self, ann_file: str | Path, root: str | Path = "") -> None:
        try:
            lines = Path(ann_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"cannot read the image list {ann_file}: {err}") from None
        self.root = Path(root)
        self.names = [line.split()[0] for line in lines if line.strip()]
        if not self.names:
            raise DatasetError(f"the image list {ann_file} names no image; one relative path per line")

    def open_image(self, index: int) -> Image.Image:
        path = self.root / self.names[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, PIL.UnidentifiedImageError) as err:
            raise DatasetError(f"cannot read image {path} (line {index + 1} of the list): {err}") from None


class ArrayImages:
    """In-memory uint8 (N, H, W, 3) images with the interface of :class:`ImageList` (the tiny preset)."""

    def __init__(self, images: np.ndarray) -> None:
        self.array = images
        self.names = [f"{i:06d}" for i in range(len(images))]

    def open_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.array[index])


def image_source(path: str | Path, root: str | Path = "") -> ImageList | ImageFiles:
    """A ``.txt`` list (with ``root``) or a folder / zip of images."""
    return ImageList(path, root) if str(path).endswith(".txt") else ImageFiles(path)


class PixelAugmentation:
    """The official ``PixelAugPil`` on an RGB uint8 array (MoCo v2's colour augmentation). ``colour_strength``
    scales the jitter's four ranges and the grayscale probability (1: official; the blur stays as it is)."""

    def __init__(self, colour_strength: float = 1.0) -> None:
        s = colour_strength
        jitter = transforms.ColorJitter(0.4 * s, 0.4 * s, 0.4 * s, 0.1 * s)
        self.colour = transforms.Compose([transforms.RandomApply([jitter], p=0.8),
                                          transforms.RandomGrayscale(p=0.2 * s)])

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        picture = self.colour(Image.fromarray(image))
        if rng.random() < 0.5:
            picture = picture.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
        return np.asarray(picture)


def flip(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of an (H, W, 3) image and its xyxy box (mmdet ``bbox_flip``: x1' = W - x2, x2' = W - x1)."""
    width = image.shape[1]
    return image[:, ::-1].copy(), np.array([width - box[2], box[1], width - box[0], box[3]], dtype=box.dtype)


def normalise(image: np.ndarray) -> Tensor:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W), mmdet's ``Normalize``."""
    x = (torch.from_numpy(np.array(image, dtype=np.float32)) - torch.tensor(MEAN)) / torch.tensor(STD)
    return x.permute(2, 0, 1).contiguous()


class CompositionPairs(torch.utils.data.Dataset):
    """(query image, query box, key image, key box) per index: the same foreground on two random backgrounds."""

    def __init__(self, images: ImageList | ImageFiles | ArrayImages, cfg: CompositionConfig | None = None,
                 seed: int = 0, colour_strength: float = 1.0) -> None:
        self.images, self.cfg, self.seed = images, cfg or CompositionConfig(), seed
        self.pixels = PixelAugmentation(colour_strength)

    def __len__(self) -> int:
        return len(self.images.names)

    def rgb(self, index: int) -> np.ndarray:
        return np.asarray(self.images.open_image(index).convert("RGB"))

    def view(self, foreground: np.ndarray, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        image, box = compose(foreground, self.rgb(int(rng.integers(len(self)))), self.cfg, rng)
        image = self.pixels(image, rng)
        if rng.random() < 0.5:
            image, box = flip(image, box)
        return normalise(image), torch.from_numpy(box)

    def __getitem__(self, item: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``item`` = epoch x len + index (:class:`insloc.training.EpochSampler`); index alone is epoch 0."""
        epoch, index = divmod(item, len(self))
        rng = np.random.default_rng([self.seed, epoch, index])
        foreground = self.rgb(index)
        with item_seeded_torch(rng):
            return (*self.view(foreground, rng), *self.view(foreground, rng))


@contextmanager
def item_seeded_torch(rng: np.random.Generator) -> Iterator[None]:
    """torch's global RNG (torchvision's transforms draw from it) seeded from the item's generator for the block,
    then restored: an item's views do not depend on the worker that makes it or on where a run resumed."""
    with torch.random.fork_rng(devices=[]):
        # the CPU generator alone: torch.manual_seed also queues a CUDA seeding that formats the call stack each
        # time (about 1 ms, a tenth of the tiny pretraining step), and the transforms draw on the CPU only
        torch.default_generator.manual_seed(int(rng.integers(2**62)))
        yield
