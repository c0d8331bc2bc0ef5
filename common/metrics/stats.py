"""Streaming feature statistics, their on-disk cache, and FID between two of them.

:class:`FeatureStats` keeps what stylegan2-ada-pytorch's ``metric_utils.FeatureStats`` keeps: the item count,
float64 sums of x and of x x^T (mean = S1/n, covariance = S2/n - mean mean^T, i.e. biased), and optionally every
feature (for KID and precision/recall). It also records the extractor ``protocol`` (network, weights' sha256,
resize mode), and :func:`fid_from_stats` refuses to compare statistics of different protocols, so FIDs of different
pipelines never meet in one table.

Cache files are ``.npz`` (read with ``allow_pickle=False``), written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.metrics.frechet import frechet_distance
from common.paths import data_dir


class ProtocolMismatchError(ValueError):
    """Two sets of statistics were computed with different extractors, weights or resize modes."""


class FeatureStats:
    """Running statistics of ``(N, D)`` feature batches, truncated at ``max_items``."""

    def __init__(self, protocol: str, capture_all: bool = False, max_items: int | None = None) -> None:
        self.protocol = protocol
        self.capture_all = capture_all
        self.max_items = max_items
        self.num_items = 0
        self.raw_mean: np.ndarray | None = None  # sum of features, float64 (D,)
        self.raw_cov: np.ndarray | None = None   # sum of outer products, float64 (D, D)
        self._features: list[np.ndarray] = []

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, features: np.ndarray | torch.Tensor) -> None:
        """Add a batch ``(B, D)``; rows beyond ``max_items`` are dropped."""
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"features must be (B, D), got shape {x.shape}")
        if self.max_items is not None:
            x = x[: max(self.max_items - self.num_items, 0)]
        if self.raw_mean is None:
            self.raw_mean = np.zeros(x.shape[1], dtype=np.float64)
            self.raw_cov = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
        if len(x) == 0:
            return
        x64 = x.astype(np.float64)
        self.num_items += len(x)
        self.raw_mean += x64.sum(axis=0)
        self.raw_cov += x64.T @ x64
        if self.capture_all:
            self._features.append(x)

    def mean_cov(self, unbiased: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance; /n as stylegan2-ada-pytorch, or /(n-1) as pytorch-fid when ``unbiased``."""
        if self.num_items < 2:
            raise ValueError(f"statistics of {self.num_items} item(s) have no covariance")
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items - np.outer(mean, mean)
        if unbiased:
            cov = cov * (self.num_items / (self.num_items - 1))
        return mean, cov

    def features(self) -> np.ndarray:
        """All features ``(N, D)`` float32 (requires ``capture_all``)."""
        if not self.capture_all:
            raise ValueError("these statistics were computed without capture_all=True")
        return np.concatenate(self._features) if self._features else np.zeros((0, 0), np.float32)

    def save(self, path: str | os.PathLike, key: dict[str, Any] | None = None) -> Path:
        """Write atomically to ``path`` (.npz) with the cache ``key`` alongside."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        arrays = {"num_items": np.int64(self.num_items), "raw_mean": self.raw_mean, "raw_cov": self.raw_cov,
                  "protocol": np.str_(self.protocol), "key": np.str_(json.dumps(key or {}, sort_keys=True))}
        if self.capture_all:
            arrays["features"] = self.features()
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        with np.load(path, allow_pickle=False) as data:
            stats = cls(str(data["protocol"]), capture_all="features" in data)
            stats.num_items = int(data["num_items"])
            stats.raw_mean, stats.raw_cov = data["raw_mean"], data["raw_cov"]
            if stats.capture_all:
                stats._features = [data["features"]]
        stats.max_items = stats.num_items
        return stats


def cache_path(name: str, key: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir or data_dir()/metric-stats>/<name>-<sha256 of key>.npz``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    folder = Path(cache_dir) if cache_dir is not None else data_dir() / "metric-stats"
    return folder / f"{name}-{digest}.npz"


def check_protocols(a: FeatureStats, b: FeatureStats) -> None:
    if a.protocol != b.protocol:
        raise ProtocolMismatchError(f"statistics come from different pipelines ({a.protocol!r} vs {b.protocol!r}); "
                                    "their Fréchet distance would mix protocols")


def fid_from_stats(real: FeatureStats, fake: FeatureStats, unbiased: bool = False) -> float:
    """Fréchet distance of two statistics of the same protocol (FID for ``tf_inception``, proxy-FD for ``proxy``)."""
    check_protocols(real, fake)
    return frechet_distance(*real.mean_cov(unbiased), *fake.mean_cov(unbiased))
