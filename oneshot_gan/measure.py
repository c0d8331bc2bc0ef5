"""What the tiny reproduction measures on an adapted generator (spec oneshot_gan.md §8): the target attribute,
diversity relative to the source, and memorisation of the reference. All are deterministic functions of the images
(and of the frozen SOURCE D, whose features are the perceptual space), so every arm is measured the same way.

- attribute rate: fraction of samples whose dominant saturated hue (6 bins of 60 degrees centred on red, yellow,
  green, cyan, blue, magenta; pixels with value >= 0.5 and saturation >= 0.2, i.e. the shapes' foregrounds, whose
  backgrounds stay below 0.45) equals the reference's. The in-domain target's attribute is a hue (yellow).
- diversity: mean pairwise distance over all sample pairs, (a) "LPIPS-like": per-pixel unit-normalised frozen-D
  block features, squared distance summed over channels, averaged over pixels and the levels b32, b16, b8; (b)
  pixel L1. Reported relative to the source G's samples.
- memorisation: mean pixel MSE of each sample to the reference or its mirror, whichever is closer (0: a copy).
- style distance: squared Frobenius distance of the Gram matrix of D's b16 features to the reference's, and the
  distance of mean colours (the photo target's "attributes" at 32 px are palette and texture statistics).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from common.stylegan2.training import generate_images

HUES = ("red", "yellow", "green", "cyan", "blue", "magenta")
LEVELS = ("b32", "b16", "b8")


def dominant_hue(images: np.ndarray) -> np.ndarray:
    """(N,) index into :data:`HUES` of each uint8 NCHW RGB image's dominant saturated hue; -1 when it has none."""
    out = np.full(len(images), -1, dtype=np.int64)
    for i, image in enumerate(images):
        hsv = cv2.cvtColor(image.transpose(1, 2, 0).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
        hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        keep = (val >= 0.5) & (sat >= 0.2)
        if keep.any():
            bins = (np.floor((hue[keep] + 30.0) / 60.0).astype(np.int64)) % 6
            out[i] = int(np.bincount(bins, minlength=6).argmax())
    return out


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-10)


@torch.no_grad()
def d_features(D: nn.Module, images: np.ndarray, batch: int = 64) -> dict[str, Tensor]:
    """The frozen D's block outputs ``b32``/``b16``/``b8`` (N, C, h, w) of uint8 NCHW images."""
    device = next(D.parameters()).device
    names = [n for n in LEVELS if n in D.feature_names()]
    parts: dict[str, list[Tensor]] = {n: [] for n in names}
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.array(images[i : i + batch])).to(device).float() / 127.5 - 1
        _, feats = D(x, torch.zeros([len(x), 0], device=device), return_features=names)
        for n in names:
            parts[n].append(feats[n].float().cpu())
    return {n: torch.cat(v) for n, v in parts.items()}


def pairwise_feature_distance(features: dict[str, Tensor]) -> float:
    """Mean over pairs i < j and over levels of mean_pixels ||u_i - u_j||^2, u = channel-unit-normalised features."""
    values = []
    for feats in features.values():
        n, _, h, w = feats.shape
        flat = _unit(feats.double()).flatten(1)  # (N, C*h*w); each pixel's C-vector has norm 1
        dist = 2.0 - 2.0 * (flat @ flat.T) / (h * w)
        values.append(float(dist[torch.triu_indices(n, n, 1).unbind()].mean()))
    return float(np.mean(values))


def pairwise_pixel_l1(images: np.ndarray) -> float:
    """Mean over pairs i < j of the mean absolute pixel difference, images scaled to [0, 1]."""
    flat = torch.from_numpy(images.reshape(len(images), -1)).double() / 255.0
    dist = torch.cdist(flat, flat, p=1) / flat.shape[1]
    n = len(images)
    return float(dist[torch.triu_indices(n, n, 1).unbind()].mean())


def memorisation_mse(images: np.ndarray, target: np.ndarray) -> float:
    """Mean over samples of min(MSE to the reference, MSE to its mirror), pixels in [0, 1]; target (3, H, W)."""
    x = images.astype(np.float64) / 255.0
    refs = [target.astype(np.float64) / 255.0, target[:, :, ::-1].astype(np.float64) / 255.0]
    mse = np.stack([((x - r[None]) ** 2).mean(axis=(1, 2, 3)) for r in refs]).min(axis=0)
    return float(mse.mean())


def _gram(feats: Tensor) -> Tensor:
    n, c, h, w = feats.shape
    flat = feats.double().flatten(2)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_distance(sample_feats: Tensor, target_feats: Tensor) -> float:
    """Mean over samples of ||Gram(sample) - Gram(reference)||_F^2 of one D level's features."""
    return float((_gram(sample_feats) - _gram(target_feats)).square().sum(dim=(1, 2)).mean())


def colour_distance(images: np.ndarray, target: np.ndarray) -> float:
    """Mean over samples of the Euclidean distance of mean RGB colours (in [0, 1]) to the reference's."""
    means = images.reshape(len(images), 3, -1).mean(axis=2) / 255.0
    ref = target.reshape(3, -1).mean(axis=1) / 255.0
    return float(np.linalg.norm(means - ref[None], axis=1).mean())


@torch.no_grad()
def sample(G: nn.Module, num: int = 256, seed: int = 1234, psi: float = 1.0) -> np.ndarray:
    """``num`` uint8 NCHW samples of G at truncation ``psi`` from a fixed latent seed (const noise)."""
    device = next(G.parameters()).device
    z = torch.randn([num, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = G.training
    G.eval()
    images = generate_images(G, z, None, truncation_psi=psi)
    G.train(was_training)
    return images


def measure(images: np.ndarray, target: np.ndarray, D: nn.Module) -> dict[str, float]:
    """Every measurement of the module docstring for samples ``images`` and the reference ``target`` (3, H, W)."""
    feats = d_features(D, images)
    target_feats = d_features(D, target[None])
    hue = dominant_hue(target[None])[0]
    return {
        "attr_rate": float((dominant_hue(images) == hue).mean()) if hue >= 0 else float("nan"),
        "div_feat": pairwise_feature_distance(feats),
        "div_pix": pairwise_pixel_l1(images),
        "mse_target": memorisation_mse(images, target),
        "style_dist": style_distance(feats["b16"], target_feats["b16"]) if "b16" in feats else float("nan"),
        "colour_dist": colour_distance(images, target),
    }
