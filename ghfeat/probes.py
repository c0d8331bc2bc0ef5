"""Downstream uses of GH-Feat on frozen features (paper §4; the official repository ships no evaluation code,
spec ghfeat.md §5).

Discriminative (features = the three code groups, concatenated; scikit-learn estimators on standardised features):

- :func:`linear_probe`: a linear classifier (the paper's ImageNet transfer: a linear classifier on frozen
  features; E in eval mode as in the official ``Cls_softmax_loss`` helper); ``ridge`` (RidgeClassifier) or
  ``logistic`` (LogisticRegression);
- :func:`ridge_regression`: continuous targets (landmarks, layout, here shape centres and sizes), R^2 and the mean
  absolute error;
- :func:`retrieval`: cosine nearest neighbours (the TPAMI version's image retrieval): precision@k of the label.

Generative (codes decoded by the frozen G): :func:`swap_groups` (style mixing: one image's codes with another's
group(s) swapped in), :func:`paste_edit` (local editing: a region of B pasted into A, then encoded and decoded, so G
harmonises it, paper Fig. "local editing"). :func:`foreground` and :func:`hue_class` measure shapes images for the
tiny hierarchy check (spec §8 check 4).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

GROUPS = ("coarse", "middle", "fine")


@torch.no_grad()
def extract_codes(E: nn.Module, images: Tensor | np.ndarray, batch: int = 64,
                  device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E's (coarse, middle, fine) codes of uint8 NCHW images, E in eval mode (moving BN statistics, as the
    official ``extract_ghfeat.py``)."""
    was_training = E.training
    E.eval()
    out: list[list[np.ndarray]] = [[], [], []]
    images = torch.as_tensor(images)
    for start in range(0, len(images), batch):
        x = images[start : start + batch].to(device).to(torch.float32) / 127.5 - 1
        for part, code in zip(out, E(x)):
            part.append(code.cpu().numpy())
    E.train(was_training)
    return tuple(np.concatenate(part) for part in out)  # type: ignore[return-value]


def features(codes: Sequence[np.ndarray], groups: Sequence[str] = GROUPS) -> np.ndarray:
    """The named code groups concatenated (all three: GH-Feat)."""
    return np.concatenate([codes[GROUPS.index(g)] for g in groups], axis=1)


def pooled_pixels(images: np.ndarray, side: int = 8) -> np.ndarray:
    """The raw-pixel reference: uint8 NCHW images average-pooled to side x side, flattened, in [0, 1]."""
    x = torch.as_tensor(images).to(torch.float32) / 255
    return torch.nn.functional.adaptive_avg_pool2d(x, side).flatten(1).numpy()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 kind: str = "ridge", regularisation: float = 1.0, seed: int = 0) -> float:
    """Test accuracy of a linear classifier on standardised frozen features (``ridge``: alpha; ``logistic``: C)."""
    scaler = StandardScaler().fit(train_x)
    if kind == "ridge":
        model = RidgeClassifier(alpha=regularisation)
    elif kind == "logistic":
        model = LogisticRegression(C=regularisation, max_iter=1000, random_state=seed)
    else:
        raise ValueError(f"probe kind is 'ridge' or 'logistic', got {kind!r}")
    with warnings.catch_warnings():  # collinear code dimensions: the ridge solve is regularised, scipy warns anyway
        warnings.simplefilter("ignore", LinAlgWarning)
        model.fit(scaler.transform(train_x), train_y)
    return float((model.predict(scaler.transform(test_x)) == test_y).mean())


def ridge_regression(train_x: np.ndarray, train_t: np.ndarray, test_x: np.ndarray, test_t: np.ndarray,
                     alpha: float = 1.0) -> dict[str, float]:
    """Ridge regression of continuous targets (N, K) on standardised features: R^2 (averaged over the K outputs)
    and the mean absolute error on the test set."""
    scaler = StandardScaler().fit(train_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        model = Ridge(alpha=alpha).fit(scaler.transform(train_x), train_t)
    pred = model.predict(scaler.transform(test_x))
    return {"r2": float(r2_score(test_t, pred)), "mae": float(np.abs(pred - test_t).mean())}


def retrieval(query_x: np.ndarray, query_y: np.ndarray, gallery_x: np.ndarray, gallery_y: np.ndarray,
              k: int = 5) -> float:
    """Precision@k: the share of each query's k cosine-nearest gallery items (standardised features) that carry
    its label, averaged over queries."""
    if not 1 <= k <= len(gallery_x):
        raise ValueError(f"k must be in 1..{len(gallery_x)} (the gallery size), got {k}")
    scaler = StandardScaler().fit(gallery_x)
    q, g = scaler.transform(query_x), scaler.transform(gallery_x)
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-12
    nearest = np.argsort(-(q @ g.T), axis=1)[:, :k]
    return float((gallery_y[nearest] == query_y[:, None]).mean())


def swap_groups(codes_a: Sequence[Tensor], codes_b: Sequence[Tensor], groups: Sequence[str]) -> list[Tensor]:
    """A's codes with B's ``groups`` swapped in (style mixing by code group)."""
    return [b if name in groups else a for name, a, b in zip(GROUPS, codes_a, codes_b)]


def paste_edit(a: Tensor, b: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """A with the region ``box`` = (top, left, height, width) of B pasted in; encode and decode the result for a
    local edit that G harmonises."""
    top, left, height, width = box
    out = a.clone()
    out[..., top : top + height, left : left + width] = b[..., top : top + height, left : left + width]
    return out


def foreground(images: np.ndarray, threshold: float = 0.15) -> np.ndarray:
    """Foreground masks (N, H, W) of one-object images (float NCHW in [0, 1]): pixels farther than ``threshold``
    (RGB distance) from the median border colour."""
    border = np.concatenate([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], axis=2)
    background = np.median(border, axis=2)
    return np.linalg.norm(images - background[:, :, None, None], axis=1) > threshold


def centroids(masks: np.ndarray) -> np.ndarray:
    """(N, 2) x, y centroid in pixels of each mask (NaN for an empty mask)."""
    h, w = masks.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w]
    area = masks.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([(masks * xs).sum(axis=(1, 2)) / area, (masks * ys).sum(axis=(1, 2)) / area], axis=1)


def hue_class(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The channel (0 R, 1 G, 2 B) that is lowest in each image's mean foreground colour (the shapes' hue rule:
    one foreground channel is scaled down); -1 for an empty mask."""
    area = masks.sum(axis=(1, 2))
    mean = (images * masks[:, None]).sum(axis=(2, 3)) / np.maximum(area, 1)[:, None]
    return np.where(area > 0, mean.argmin(axis=1), -1)
