"""The tiny preset's measurements (spec ghfeat.md §8, §8a): labelled shapes, the random-init control encoder, and
one encoder's probe, reconstruction and style-mixing numbers.

Labelled data: :func:`common.data.synthetic.shapes` with its factors: ``shape`` (4 classes), ``hue`` (3: which
foreground channel the generator scaled down), ``quadrant`` (4, of the centre), ``size`` (2: circumradius above
0.26 of the width); continuous ``cx``, ``cy``, ``size`` for ridge regression.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from common.data.synthetic import shape_factors, shapes
from ghfeat import probes
from ghfeat.codes import codes_to_styles

TASKS = ("shape", "hue", "quadrant", "size")
SIZE_SPLIT = 0.26  # the middle of the shapes' size range [0.18, 0.34]


def labelled_shapes(num: int, seed: int, resolution: int = 32) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """uint8 NCHW images, class labels per task in :data:`TASKS`, and (N, 3) targets (cx, cy, size)."""
    images, _ = shapes(num, resolution, seed)
    f = shape_factors(num, seed)
    cx, cy = f["center"][:, 0], f["center"][:, 1]
    labels = {
        "shape": f["shape"],
        "hue": f["foreground"].argmin(axis=1),
        "quadrant": (cx > 0.5).astype(np.int64) + 2 * (cy > 0.5).astype(np.int64),
        "size": (f["size"] > SIZE_SPLIT).astype(np.int64),
    }
    return images.transpose(0, 3, 1, 2).copy(), labels, np.stack([cx, cy, f["size"]], axis=1)


@torch.no_grad()
def recalibrate_bn(E: nn.Module, images: np.ndarray, batch: int = 64) -> nn.Module:
    """BatchNorm moving statistics re-estimated on ``images`` (cumulative averages, no weight changes): the
    random-init control gets the statistics a trained encoder has, so only the learned weights differ."""
    for module in E.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    E.train()
    for start in range(0, len(images), batch):
        E(torch.as_tensor(images[start : start + batch]).to(torch.float32) / 127.5 - 1)
    for module in E.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1
    return E.eval()


@torch.no_grad()
def decode(G: nn.Module, codes: list[Tensor], batch: int = 200) -> np.ndarray:
    """G's images (float NCHW in [0, 1]) of (coarse, middle, fine) codes, constant noise."""
    out = []
    for start in range(0, len(codes[0]), batch):
        part = [c[start : start + batch] for c in codes]
        img = G.synthesis(None, styles=codes_to_styles(part, G.synthesis.style_dims()), noise_mode="const")
        out.append(((img.clamp(-1, 1) + 1) / 2).numpy())
    return np.concatenate(out)


def probe_all(train: np.ndarray, test: np.ndarray, data: dict[str, Any]) -> dict[str, float]:
    """Ridge-classifier accuracy per task, ridge R^2 of (cx, cy, size), retrieval precision@5 of shape and hue."""
    out = {task: probes.linear_probe(train, data["train_labels"][task], test, data["test_labels"][task])
           for task in TASKS}
    out["regression_r2"] = probes.ridge_regression(train, data["train_targets"], test, data["test_targets"])["r2"]
    for task in ("shape", "hue"):
        out[f"retrieval_{task}"] = probes.retrieval(test[:500], data["test_labels"][task][:500], train,
                                                    data["train_labels"][task])
    return out


def mixing(G: nn.Module, codes: list[Tensor], pairs: int) -> dict[str, float]:
    """Style mixing on ``pairs`` (A, B) pairs of test codes: for each group swapped from B into A, the foreground
    centroid's shift from A's reconstruction as a fraction of the A-B centroid distance, and how often the hue
    follows A (pairs whose reconstructions differ in hue)."""
    a = [c[:pairs] for c in codes]
    b = [c[pairs : 2 * pairs] for c in codes]
    rec_a, rec_b = decode(G, a), decode(G, b)
    mask_a, mask_b = probes.foreground(rec_a), probes.foreground(rec_b)
    cen_a, cen_b = probes.centroids(mask_a), probes.centroids(mask_b)
    hue_a, hue_b = probes.hue_class(rec_a, mask_a), probes.hue_class(rec_b, mask_b)
    distance = np.linalg.norm(cen_a - cen_b, axis=1)
    out: dict[str, float] = {"ab_distance_px": float(np.nanmean(distance)) if np.isfinite(distance).any() else np.nan}
    for groups in (["coarse"], ["middle"], ["fine"], ["middle", "fine"]):
        mixed = decode(G, probes.swap_groups(a, b, groups))
        mask = probes.foreground(mixed)
        cen, hue = probes.centroids(mask), probes.hue_class(mixed, mask)
        ok = np.isfinite(cen).all(1) & np.isfinite(cen_a).all(1) & np.isfinite(cen_b).all(1) & (distance > 2)
        name = "+".join(groups)
        shift = np.linalg.norm(cen[ok] - cen_a[ok], axis=1).mean() / distance[ok].mean() if ok.any() else np.nan
        out[f"shift_{name}"] = float(shift)
        differ = (hue_a != hue_b) & (hue_a >= 0) & (hue_b >= 0) & (hue >= 0)
        out[f"hue_follows_A_{name}"] = float((hue[differ] == hue_a[differ]).mean()) if differ.any() else float("nan")
    return out


def evaluate(E: nn.Module, G: nn.Module, data: dict[str, Any], pairs: int = 400) -> dict[str, Any]:
    """Every tiny measurement of one encoder (E in eval mode)."""
    train_codes = probes.extract_codes(E, data["train_images"])
    test_codes = probes.extract_codes(E, data["test_images"])
    result: dict[str, Any] = {"all": probe_all(probes.features(train_codes), probes.features(test_codes), data)}
    for group in probes.GROUPS:
        result[group] = probe_all(probes.features(train_codes, [group]), probes.features(test_codes, [group]), data)
    codes = [torch.from_numpy(c) for c in test_codes]
    rec = decode(G, codes)
    result["recon_mse"] = float(((rec * 2 - 1) - (data["test_images"] / 127.5 - 1)).__pow__(2).mean())
    result["mixing"] = mixing(G, codes, pairs)
    return result
