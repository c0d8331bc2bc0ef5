"""Snapshot metrics of the StyleGAN2 loop, named as ``train.metrics`` lists them.

- ``fid50k_full``: FID of 50k G_ema samples against the FULL training set (no x-flips), TF-Inception features
  (official default, spec §5). The Inception weights are resolved when the evaluator is built, so a missing file
  stops the run at start-up with the message that says how to provide it, not at the first snapshot.
- ``kid50k_full``: KID on the same features.
- ``proxy_fd``: Fréchet distance of 2k samples in the project's offline proxy-CNN feature space against the full
  training set; reported as proxy-FD, never as FID (tiny presets, tests).

Building the evaluator and evaluating run inside ``torch.random.fork_rng``: neither moves the training RNG, so a
run trains the same weights with or without metrics, and a resumed run stays identical to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from common.config import ConfigError
from common.data import ImageDataset
from common.metrics import build_extractor, compute_fid, compute_kid

METRICS = ("fid50k_full", "kid50k_full", "proxy_fd")
PROXY_NUM_GEN = 2000


def make_evaluator(
    metrics: list[str], dataset: ImageDataset, device: torch.device, weights: str | None = None
) -> Callable[[torch.nn.Module], dict[str, float]] | None:
    """A function ``G_ema -> {metric: value}`` for the listed metrics, or None when the list is empty/'none'."""
    names = [m for m in metrics if m != "none"]
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)} in train.metrics; choose from {', '.join(METRICS)}")
    if not names:
        return None
    real = ImageDataset(dataset.path, resolution=dataset.resolution, use_labels=dataset.has_labels)  # full set
    with torch.random.fork_rng(devices=[]):  # building the extractors (module init) must not move it either
        inception = (
            build_extractor("tf_inception", weights, device=device)
            if {"fid50k_full", "kid50k_full"} & set(names)
            else None
        )
        proxy = build_extractor("proxy", device=device) if "proxy_fd" in names else None

    def evaluate(G: torch.nn.Module) -> dict[str, float]:
        devices = [device] if device.type == "cuda" else []
        results: dict[str, float] = {}
        with torch.random.fork_rng(devices=devices):
            if "fid50k_full" in names:
                results["fid50k_full"] = compute_fid(real, G, inception, num_gen=50_000)
            if "kid50k_full" in names:
                results["kid50k_full"] = compute_kid(real, G, inception, num_gen=50_000)
            if "proxy_fd" in names:
                results["proxy_fd"] = compute_fid(real, G, proxy, num_gen=PROXY_NUM_GEN)
        return results

    return evaluate
