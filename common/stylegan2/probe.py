"""The measurements of the limited-data testbed, shared by the InsGen, DynamicD and EqGAN-SA reports.

Every ``probe.every`` iterations (config section ``probe``) the loop measures, under ``torch.random.fork_rng`` so
that training continues exactly as without the probe:

- ``gap`` (primary): mean D logit on the training images minus on held-out images of the same dataset, both
  un-augmented (ADA paper Fig. 1's over-fitting diagnostic; InsGen's and DynamicD's stated target);
- ``proxy_fd``: Fréchet distance of ``num_fakes`` G_ema samples against the FULL dataset in the offline proxy-CNN
  space (reported as proxy-FD, never as FID);
- ``class_entropy``: entropy (nats) of the class histogram of those samples under a logistic regression fitted on the
  full dataset at 8x8 (max ln 10 = 2.30 for digits); a mode-collapse guard;
- ``retrieval_top1``: two ``bgc`` views (p 0.3) of each held-out image; the fraction whose nearest neighbour among
  the second views, by D's pooled last-block features, is its own view (InsGen's instance discrimination).

The held-out images are ``probe.heldout`` images of the full dataset outside the training subset, drawn with a fixed
seed, so every arm and seed of a comparison sees the same split. Each measurement is appended to
``<run_dir>/probe.jsonl`` as it is taken (by rank 0; under torchrun every rank measures, as proxy-FD gathers
samples from all of them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import dist
from common.config import ConfigError
from common.data import DatasetError, ImageDataset
from common.metrics import build_extractor, fid_from_stats, real_stats
from common.metrics.gan import fake_stats
from common.stylegan2.augment import augment_pipe as make_augment_pipe

RETRIEVAL_PIPE, RETRIEVAL_P = "bgc", 0.3
HELDOUT_SEED = 0


@torch.no_grad()
def discriminator_logits(D: nn.Module, images: Tensor, batch: int = 20) -> Tensor:
    """D's logits [N] on un-augmented images in [-1, 1] (batches divisible by the mbstd group)."""
    c = torch.zeros([batch, 0], device=images.device)
    return torch.cat([D(x, c[: len(x)]).flatten() for x in images.split(batch)])


def discriminator_gap(D: nn.Module, train_images: Tensor, heldout_images: Tensor, batch: int = 20) -> float:
    """mean D(train reals) - mean D(held-out reals); positive when D scores what it trained on higher."""
    train_mean = discriminator_logits(D, train_images, batch).mean()
    return float(train_mean - discriminator_logits(D, heldout_images, batch).mean())


@torch.no_grad()
def instance_retrieval_top1(D: nn.Module, images: Tensor, augment: nn.Module, batch: int = 20) -> float:
    """Top-1 accuracy of matching A(x) to A'(x) among all images' second views by D's pooled last-block features."""
    last = [name for name in D.feature_names() if name != "fc"][-1]
    views = []
    for _ in range(2):
        out = []
        for x in images.split(batch):
            _, feats = D(augment(x), torch.zeros([len(x), 0], device=x.device), return_features=[last])
            out.append(F.normalize(feats[last].float().mean(dim=[2, 3]), dim=1))
        views.append(torch.cat(out))
    nearest = (views[0] @ views[1].t()).argmax(dim=1)
    return float((nearest == torch.arange(len(images), device=images.device)).float().mean())


class PixelClassifier:
    """Logistic regression on a dataset's images area-downsampled to 8x8 (deterministic; digits: 1,797 images)."""

    def __init__(self, images: Tensor, labels: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self.num_classes = int(labels.max()) + 1
        self.model = LogisticRegression(max_iter=2000).fit(self._pixels(images), labels)

    @staticmethod
    def _pixels(images: Tensor) -> np.ndarray:
        return F.adaptive_avg_pool2d(images.float().clamp(-1, 1), 8).flatten(1).cpu().numpy()

    def predict(self, images: Tensor) -> np.ndarray:
        """Classes of images [N, C, H, W] in [-1, 1]."""
        return self.model.predict(self._pixels(images))


def class_entropy(classes: np.ndarray, num_classes: int) -> float:
    """Entropy (nats) of the class histogram; ln(num_classes) when every class is equally frequent."""
    counts = np.bincount(classes, minlength=num_classes).astype(np.float64)
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * np.log(probs)).sum())


def heldout_indices(train_set: ImageDataset, full: ImageDataset, count: int) -> np.ndarray:
    """``count`` indices of ``full`` outside the training subset, drawn with a fixed seed (sorted)."""
    kept = set(int(i) for i in train_set.raw_indices)
    rest = np.array([i for i in range(len(full)) if i not in kept])
    if len(rest) < count:
        raise ConfigError(
            f"the probe needs {count} held-out images, but only {len(rest)} of the {len(full)} are outside the "
            "training subset: set data.subset smaller or probe.heldout lower"
        )
    return np.sort(np.random.RandomState(HELDOUT_SEED).permutation(rest)[:count])


def _as_float(images: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).float() / 127.5 - 1


class LimitedProbe:
    """Measures one run (module docstring); ``history`` holds every measurement."""

    def __init__(self, train_set: ImageDataset, run_dir: Path, device: torch.device, heldout: int, num_fakes: int):
        if train_set.label_dim:
            raise ConfigError("the probe measures unconditional runs; set probe.every=0 or data.cond=false")
        self.run_dir, self.device, self.num_fakes = Path(run_dir), device, num_fakes
        self.full = ImageDataset(train_set.path, resolution=train_set.resolution)
        unique = sorted(set(int(i) for i in train_set.raw_indices))
        self.train_images = _as_float(np.stack([self.full[i][0] for i in unique]), device)
        held = heldout_indices(train_set, self.full, heldout)
        self.heldout_images = _as_float(np.stack([self.full[int(i)][0] for i in held]), device)
        self.classifier = None
        try:  # the dataset's class labels, also when the run is unconditional
            labelled = ImageDataset(train_set.path, resolution=train_set.resolution, use_labels=True)
        except DatasetError:
            labelled = None
        if labelled is not None:
            images = _as_float(np.stack([labelled[i][0] for i in range(len(labelled))]), device)
            labels = np.array([int(np.argmax(labelled.get_label(i))) for i in range(len(labelled))])
            self.classifier = PixelClassifier(images, labels)
        self.proxy = build_extractor("proxy", device=device)
        self.real_stats = real_stats(self.full, self.proxy)  # once (cached on disk across runs too)
        self.view_augment = make_augment_pipe(RETRIEVAL_PIPE, p=RETRIEVAL_P).to(device)
        self.history: list[dict[str, Any]] = []

    def measure(self, G_ema: nn.Module, D: nn.Module, cur_nimg: int, batch_idx: int, augment_p: float) -> None:
        from common.stylegan2.training import generate_images  # the loop imports this module

        z = torch.randn([self.num_fakes, G_ema.z_dim], generator=torch.Generator().manual_seed(0)).to(self.device)
        fakes = _as_float(generate_images(G_ema, z, None), self.device)
        record = {
            "kimg": cur_nimg / 1000,
            "iteration": batch_idx,
            "gap": discriminator_gap(D, self.train_images, self.heldout_images),
            "retrieval_top1": instance_retrieval_top1(D, self.heldout_images, self.view_augment),
            "proxy_fd": fid_from_stats(self.real_stats, fake_stats(G_ema, self.proxy, self.num_fakes)),
            "class_entropy": (class_entropy(self.classifier.predict(fakes), self.classifier.num_classes)
                              if self.classifier is not None else None),
            "max_class_entropy": math.log(self.classifier.num_classes) if self.classifier is not None else None,
            "augment_p": augment_p,
        }
        self.history.append(record)
        if dist.is_main():
            with open(self.run_dir / "probe.jsonl", "a") as f:  # follow a long run while it trains
                f.write(json.dumps(record) + "\n")
