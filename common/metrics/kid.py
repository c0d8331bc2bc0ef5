"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

Protocol of stylegan2-ada-pytorch ``metrics/kernel_inception_distance.py`` (``kid50k_full``; clean-fid's
``kernel_distance`` is the same): k(x, y) = (x.y / d + 1)^3, ``num_subsets`` = 100 random subsets of
m = min(n_real, n_fake, 1000) points from each set, drawn without replacement, and

    KID = 1/(100 m) * sum_subsets [ (sum(Kxx + Kyy) - trace(Kxx + Kyy)) / (m - 1) - 2 sum(Kxy) / m ].

The official draws subsets from an unseeded ``np.random``; here a seeded generator makes the value reproducible.
KID is usually reported x10^3 and may be slightly negative for two samples of one distribution.
"""

from __future__ import annotations

import numpy as np


def kernel_inception_distance(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """KID between ``real_features`` ``(Nr, D)`` and ``fake_features`` ``(Nf, D)``."""
    real, fake = np.asarray(real_features), np.asarray(fake_features)  # subsets are cast to float64 below
    d = real.shape[1]
    m = min(len(real), len(fake), max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 features in each set, got {len(real)} real and {len(fake)} fake")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)].astype(np.float64)
        y = real[rng.choice(len(real), m, replace=False)].astype(np.float64)
        within = (x @ x.T / d + 1.0) ** 3 + (y @ y.T / d + 1.0) ** 3
        across = (x @ y.T / d + 1.0) ** 3
        total += (within.sum() - np.trace(within)) / (m - 1) - 2.0 * across.sum() / m
    return float(total / num_subsets / m)
