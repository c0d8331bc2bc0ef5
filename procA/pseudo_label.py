"""Stage 4: ``python -m procA.pseudo_label --cfg CFG --ckpt PROCA_RUN/model.pt`` -> ``<run>/pseudo_labels/*.png``.

Official pseudo_label.py (spec §2.4), run by rank 0: (1) softmax confidences of the ProCA model on every target
train image at the training size (logits upsampled to the input size); per class c the threshold is the value at
position round(percent * n_c) of the ascending confidences of the n_c pixels predicted as c, capped at
``threshold_cap`` (0 if c is never predicted); (2) the logits upsampled ONCE (bilinear, align_corners=True),
straight to the full image size, then soft-maxed (official ``inference`` against the full-size label), pixels below
their class threshold set to 255, saved as palette PNGs. The official leftover ``pdb.set_trace()`` in the
per-image loop is not reproduced (spec §7.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from common import dist
from common.cli import common_options, output_run, setup_run, user_errors
from common.config import config_rows
from common.logging import progress
from procA.config import CONFIG_DIR, ProCAConfig, config_path
from procA.data import build_dataset
from procA.labels import CITYSCAPES_PALETTE, IGNORE_LABEL
from procA.training import build_model

LABELS_DIR = "pseudo_labels"
THRESHOLDS_FILE = "thresholds.npy"


def class_thresholds(confidence: Sequence[np.ndarray], num_classes: int, percent: float, cap: float) -> np.ndarray:
    """Per-class thresholds from ``confidence[c]``, the max-softmax values of the pixels predicted as class c."""
    thresholds = np.zeros(num_classes, dtype=np.float64)
    for c in range(num_classes):
        values = np.sort(np.asarray(confidence[c], dtype=np.float64))
        if len(values):
            thresholds[c] = values[min(int(np.round(len(values) * percent)), len(values) - 1)]
    return np.minimum(thresholds, cap)


def save_label_png(label: np.ndarray, path: Path) -> None:
    """A palette PNG whose pixel values are train ids (255 = ignore)."""
    image = PIL.Image.fromarray(label.astype(np.uint8), mode="P")
    flat = [v for colour in CITYSCAPES_PALETTE for v in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    image.save(path)


@torch.no_grad()
def generate_pseudo_labels(cfg: ProCAConfig, model_path: str, out_dir: Path, device: torch.device) -> np.ndarray:
    """Write one PNG per target train image into ``out_dir``; returns the per-class thresholds.

    Runs on rank 0 only (the official script uses one GPU); other ranks wait and get the thresholds file's values.
    """
    if not dist.is_main():
        dist.barrier()
        return np.load(out_dir.parent / THRESHOLDS_FILE)
    k = cfg.model.num_classes
    model = build_model(cfg, model_path, device).eval()
    data = build_dataset(cfg.data, "target_train", k, seed=cfg.seed)
    per_class: list[list[np.ndarray]] = [[] for _ in range(k)]
    for i in progress(range(len(data)), len(data), "pseudo-labels: class thresholds", "img"):
        image, _ = data[i]
        probs = model.predict(image[None].to(device)).softmax(dim=1)[0]
        confidence, prediction = probs.max(dim=0)
        for c in prediction.unique().tolist():
            per_class[c].append(confidence[prediction == c].cpu().numpy().astype(np.float16))
    thresholds = class_thresholds([np.concatenate(p) if p else np.zeros(0) for p in per_class], k,
                                  cfg.pseudo_label.threshold_percent, cfg.pseudo_label.threshold_cap)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, name in progress(enumerate(data.names), len(data), "pseudo-labels: writing", "img"):
        raw_image, _ = data.load_raw(i)
        image, _ = data[i]
        _, logits = model(image[None].to(device))
        probs = F.interpolate(logits, size=(raw_image.height, raw_image.width), mode="bilinear",
                              align_corners=True).softmax(dim=1)[0]
        confidence, prediction = probs.max(dim=0)
        keep = confidence >= torch.as_tensor(thresholds, device=device, dtype=confidence.dtype)[prediction]
        label = torch.where(keep, prediction, torch.full_like(prediction, IGNORE_LABEL))
        save_label_png(label.cpu().numpy(), out_dir / f"{Path(name).stem}.png")
    np.save(out_dir.parent / THRESHOLDS_FILE, thresholds)
    dist.barrier()
    return thresholds


@click.command()
@common_options(rows=config_rows(CONFIG_DIR))
@click.option("--ckpt", required=True, type=click.Path(exists=True, dir_okay=False), help="Stage-3 model.pt.")
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None, ckpt: str) -> None:
    """Offline pseudo-labels of the target train set for self-training."""
    setup = setup_run(ProCAConfig, "procA", config_path(cfg), overrides, outdir, resume, seed, device)
    with output_run(setup), user_errors():
        thresholds = generate_pseudo_labels(setup.cfg, ckpt, Path(setup.run_dir) / LABELS_DIR, setup.info.device)
    dist.print0(f"done: thresholds {np.round(thresholds, 3).tolist()} -> {Path(setup.run_dir) / LABELS_DIR}")


if __name__ == "__main__":
    main()
