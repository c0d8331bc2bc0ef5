"""ProCA datasets (spec §4): GTA5, SYNTHIA-RAND-CITYSCAPES, Cityscapes, offline pseudo-labels, synthetic streets.

Every dataset yields ``(image, label)``: a float (3, h, w) ImageNet-normalised tensor and an int64 (H, W) map of train
ids with 255 = ignore. Unlabelled target training images give an all-255 label, so target labels can never leak into
training. Transforms follow the official core/datasets/transform.py: training images are resized (bicubic; labels
nearest with ``cv2.INTER_NEAREST_EXACT``, equal to the official PIL ``Image.NEAREST``) to the configured size, the
ProCA stage adds photometric jitter/grayscale/blur to the source, self-training draws a random scale 0.5-1.5 and
crop (pad 255), a flip and the same photometric noise on the target; test images are resized to ``test_size`` while
labels stay at full resolution. Layout problems raise ``DatasetError`` naming the path and the expected layout.
The class-balanced source list of the official loader is in procA/label_info.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import PIL.Image
import torch
from torch import Tensor
from torchvision.transforms import ColorJitter, GaussianBlur, RandomGrayscale

from common.data import DatasetError
from procA import synthetic
from procA.config import DataConfig
from procA.labels import GTA5_ID_TO_TRAINID, IGNORE_LABEL, SYNTHIA_ID_TO_TRAINID, cityscapes_map, remap_labels

Augment = Literal["none", "photometric", "scale_crop"]
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

GTA5_LAYOUT = "<root>/images/00001.png ... and <root>/labels/00001.png (Cityscapes label-id PNGs)"
SYNTHIA_LAYOUT = "<root>/RAND_CITYSCAPES/RGB/0000000.png ... and <root>/RAND_CITYSCAPES/GT/LABELS/0000000.png"
CITYSCAPES_LAYOUT = (
    "<root>/leftImg8bit/{split}/<city>/*_leftImg8bit.png and <root>/gtFine/{split}/<city>/*_gtFine_labelIds.png"
)


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize of a label map to ``size`` = (width, height), equal to PIL ``Image.NEAREST`` as the official
    transform.py (torchvision ``F.resize(label, size, Image.NEAREST)``). ``cv2.INTER_NEAREST`` samples other source
    pixels (it moved 1.58% of GTA5 label pixels at 1914x1052 -> 1280x720); ``INTER_NEAREST_EXACT`` does not."""
    return cv2.resize(label, size, interpolation=cv2.INTER_NEAREST_EXACT)


class SegmentationTransform:
    """Resize / augment / normalise one ``(PIL image, uint8 label or None)`` pair (official transform.py)."""

    def __init__(self, size: tuple[int, int], augment: Augment = "none", keep_label_size: bool = False) -> None:
        self.size = size  # (width, height)
        self.augment = augment
        self.keep_label_size = keep_label_size
        self.photometric = [ColorJitter(0.5, 0.5, 0.5, 0.2), RandomGrayscale(0.2), GaussianBlur(3, (0.1, 2.0))]

    def __call__(self, image: PIL.Image.Image, label: np.ndarray | None) -> tuple[Tensor, Tensor]:
        if label is None:
            label = np.full((image.height, image.width), IGNORE_LABEL, dtype=np.uint8)
        if self.augment == "scale_crop":
            image, label = self._scale_crop_flip(image, label)
        else:
            image = image.resize(self.size, PIL.Image.BICUBIC) if image.size != self.size else image
            if not self.keep_label_size and label.shape[::-1] != self.size:
                label = resize_label(label, self.size)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        if self.augment != "none":
            for op in self.photometric:
                x = op(x)
        return (x - MEAN) / STD, torch.from_numpy(label.astype(np.int64))

    def _scale_crop_flip(self, image: PIL.Image.Image, label: np.ndarray) -> tuple[PIL.Image.Image, np.ndarray]:
        scale = float(torch.empty(()).uniform_(0.5, 1.5))
        w, h = int(image.width * scale + 0.5), int(image.height * scale + 0.5)
        image = np.asarray(image.resize((w, h), PIL.Image.BICUBIC))
        label = resize_label(label, (w, h))
        cw, ch = self.size
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_LABEL)
        top = int(torch.randint(0, image.shape[0] - ch + 1, ()))
        left = int(torch.randint(0, image.shape[1] - cw + 1, ()))
        image, label = image[top : top + ch, left : left + cw], label[top : top + ch, left : left + cw]
        if bool(torch.rand(()) < 0.5):
            image, label = image[:, ::-1], label[:, ::-1]
        return PIL.Image.fromarray(np.ascontiguousarray(image)), np.ascontiguousarray(label)


class SegmentationDataset(torch.utils.data.Dataset):
    """``(image, label)`` pairs from a loader of raw samples and a :class:`SegmentationTransform`.

    ``load_raw(i)`` gives the untransformed ``(PIL image, uint8 label or None)`` (pseudo-labelling needs the full size).
    """

    def __init__(
        self,
        names: Sequence[str],
        load: Callable[[int], tuple[PIL.Image.Image, np.ndarray | None]],
        transform: SegmentationTransform,
    ) -> None:
        self.names = list(names)
        self.load_raw = load
        self.transform = transform

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self.load_raw(index)
        return self.transform(image, label)


def _read_list(list_file: str, what: str) -> list[str] | None:
    if not list_file:
        return None
    path = Path(list_file)
    if not path.is_file():
        raise DatasetError(f"{what} list file not found: {path} (one image name per line, or set it to '')")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{what} folder not found: {path}; expected layout {layout}")


def _pair_files(
    image_dir: Path, label_dir: Path | None, names: list[str] | None, label_name: Callable[[str], str],
    what: str, layout: str, pattern: str = "*.png",
) -> list[tuple[Path, Path | None]]:
    _require_dir(image_dir, what, layout)
    if names is None:
        names = sorted(p.relative_to(image_dir).as_posix() for p in image_dir.glob(pattern))
    if not names:
        raise DatasetError(f"no {what} images in {image_dir}; expected layout {layout}")
    pairs = []
    for name in names:
        image = image_dir / name
        if not image.is_file():
            raise DatasetError(f"{what} image listed but missing: {image}; expected layout {layout}")
        label = None
        if label_dir is not None:
            label = label_dir / label_name(name)
            if not label.is_file():
                raise DatasetError(f"{what} label missing for {image}: expected {label} (layout {layout})")
        pairs.append((image, label))
    return pairs


def _open_rgb(path: Path) -> PIL.Image.Image:
    try:
        with PIL.Image.open(path) as im:
            return im.convert("RGB")
    except OSError as err:
        raise DatasetError(f"cannot read image {path} ({err}); re-extract the dataset") from None


def _read_index_png(path: Path) -> np.ndarray:
    try:
        with PIL.Image.open(path) as im:
            return np.array(im)
    except OSError as err:
        raise DatasetError(f"cannot read label {path} ({err}); re-extract the dataset") from None


def _read_synthia_label(path: Path) -> np.ndarray:
    """SYNTHIA labels are 16-bit PNGs whose first (R) channel is the class id (cv2 reads BGR: index 2)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DatasetError(f"cannot read SYNTHIA label {path}; re-extract RAND_CITYSCAPES/GT/LABELS")
    return raw[..., 2] if raw.ndim == 3 else raw


def _file_dataset(
    pairs: list[tuple[Path, Path | None]], read_label: Callable[[Path], np.ndarray],
    id_map: Mapping[int, int] | None, transform: SegmentationTransform,
) -> SegmentationDataset:
    def load(i: int) -> tuple[PIL.Image.Image, np.ndarray | None]:
        image_path, label_path = pairs[i]
        if label_path is None:
            return _open_rgb(image_path), None
        raw = read_label(label_path)
        return _open_rgb(image_path), remap_labels(raw, id_map) if id_map is not None else raw.astype(np.uint8)

    return SegmentationDataset([p[0].name for p in pairs], load, transform)


def gta5(root: str | os.PathLike, list_file: str, transform: SegmentationTransform) -> SegmentationDataset:
    root = Path(root)
    _require_dir(root, "GTA5", GTA5_LAYOUT)
    pairs = _pair_files(root / "images", root / "labels", _read_list(list_file, "GTA5"), lambda n: n, "GTA5",
                        GTA5_LAYOUT)
    return _file_dataset(pairs, _read_index_png, GTA5_ID_TO_TRAINID, transform)


def synthia(root: str | os.PathLike, list_file: str, transform: SegmentationTransform) -> SegmentationDataset:
    base = Path(root) / "RAND_CITYSCAPES"
    _require_dir(base, "SYNTHIA", SYNTHIA_LAYOUT)
    pairs = _pair_files(base / "RGB", base / "GT" / "LABELS", _read_list(list_file, "SYNTHIA"), lambda n: n,
                        "SYNTHIA", SYNTHIA_LAYOUT)
    return _file_dataset(pairs, _read_synthia_label, SYNTHIA_ID_TO_TRAINID, transform)


def cityscapes(
    root: str | os.PathLike, split: str, list_file: str, transform: SegmentationTransform,
    num_classes: int = 19, labelled: bool = True,
) -> SegmentationDataset:
    """Cityscapes ``split``; ``labelled=False`` (target training) never opens the label files."""
    root = Path(root)
    layout = CITYSCAPES_LAYOUT.format(split=split)
    _require_dir(root, "Cityscapes", layout)
    label_dir = root / "gtFine" / split if labelled else None
    if labelled:
        _require_dir(label_dir, f"Cityscapes {split} labels", layout)
    pairs = _pair_files(
        root / "leftImg8bit" / split, label_dir, _read_list(list_file, f"Cityscapes {split}"),
        lambda n: n.replace("_leftImg8bit.png", "_gtFine_labelIds.png"), f"Cityscapes {split}", layout,
        pattern="*/*_leftImg8bit.png",
    )
    return _file_dataset(pairs, _read_index_png, cityscapes_map(num_classes), transform)


def with_pseudo_labels(
    images: SegmentationDataset, labels_dir: str | os.PathLike, transform: SegmentationTransform, num_classes: int
) -> SegmentationDataset:
    """Target training images paired with the PNGs written by ``procA.pseudo_label`` (train ids, 255 = ignore).
    A label outside 0..num_classes-1 and 255 (pseudo-labels of another class setting) stops with the file named."""
    labels_dir = Path(labels_dir)
    _require_dir(labels_dir, "pseudo-label", "<dir>/<image name>.png as written by python -m procA.pseudo_label")
    paths = [labels_dir / f"{Path(n).stem}.png" for n in images.names]
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"pseudo-label missing: {path}; run python -m procA.pseudo_label on this target set")

    def load(i: int) -> tuple[PIL.Image.Image, np.ndarray]:
        image, _ = images.load_raw(i)
        label = _read_index_png(paths[i])
        bad = np.unique(label[(label >= num_classes) & (label != IGNORE_LABEL)])
        if len(bad):
            raise DatasetError(f"pseudo-label {paths[i]} holds class ids {bad.tolist()[:5]} outside "
                               f"0..{num_classes - 1} (and {IGNORE_LABEL} = ignore): were these pseudo-labels made "
                               "with another model.num_classes? Rerun python -m procA.pseudo_label for this config")
        return image, label

    return SegmentationDataset(images.names, load, transform)


def synthetic_streets(
    domain: Literal["source", "target"], count: int, size: int, seed: int, labelled: bool,
    transform: SegmentationTransform,
) -> SegmentationDataset:
    """In-memory procedural scenes (procA/synthetic.py); generated in well under a second, deterministic."""
    images, labels = synthetic.street_scenes(count, size, seed, domain)

    def load(i: int) -> tuple[PIL.Image.Image, np.ndarray | None]:
        return PIL.Image.fromarray(images[i]), labels[i] if labelled else None

    return SegmentationDataset([f"{domain}_{seed}_{i:05d}" for i in range(count)], load, transform)


Role = Literal["source", "target_train", "target_val"]


def build_dataset(cfg: DataConfig, role: Role, num_classes: int, augment: Augment = "none",
                  seed: int = 0) -> SegmentationDataset:
    """The dataset of one role in the pipeline. ``seed`` picks the synthetic data (each tiny seed has its own)."""
    if role == "source":
        transform = SegmentationTransform(tuple(cfg.source_size), augment)
        if cfg.source == "synthetic":
            return synthetic_streets("source", cfg.synthetic.num_source, cfg.synthetic.size, 3 * seed, True, transform)
        if cfg.source == "gta5":
            return gta5(cfg.source_root, cfg.source_list, transform)
        return synthia(cfg.source_root, cfg.source_list, transform)
    if role == "target_train":
        transform = SegmentationTransform(tuple(cfg.target_size), augment)
        if cfg.source == "synthetic":
            return synthetic_streets("target", cfg.synthetic.num_target, cfg.synthetic.size, 3 * seed + 1, False,
                                     transform)
        return cityscapes(cfg.target_root, "train", cfg.target_train_list, transform, num_classes, labelled=False)
    transform = SegmentationTransform(tuple(cfg.test_size), "none", keep_label_size=True)
    if cfg.source == "synthetic":
        return synthetic_streets("target", cfg.synthetic.num_val, cfg.synthetic.size, 3 * seed + 2, True, transform)
    return cityscapes(cfg.target_root, "val", cfg.target_val_list, transform, num_classes, labelled=True)


def denormalize(images: Tensor) -> Tensor:
    """(N, 3, H, W) normalised -> uint8 for overlays."""
    return ((images.cpu() * STD + MEAN).clamp(0, 1) * 255 + 0.5).to(torch.uint8)

