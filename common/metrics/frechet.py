"""Fréchet distance between Gaussians fitted to features: FID (Heusel et al. 2017, Eq. 6) and proxy-FD.

    FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

Tr (S1 S2)^{1/2} is computed from eigenvalues instead of ``scipy.linalg.sqrtm``: S1 S2 is similar to the symmetric
PSD matrix sqrt(S1) S2 sqrt(S1) (conjugate by sqrt(S1)), so the trace of its principal square root is
sum_i sqrt(lambda_i) over that matrix's eigenvalues (metrics.md §8). This needs only ``eigh``, works with SciPy
>= 1.18 (where ``sqrtm(disp=)`` is gone), and has no imaginary-part failure mode (pytorch-fid #100/#103).
Tiny negative eigenvalues from round-off are clipped to 0.

Covariance convention: stylegan2-ada-pytorch (``metric_utils.FeatureStats.get_mean_cov``) divides by n (biased,
the default here); pytorch-fid and clean-fid use ``np.cov`` (n - 1). At 50k samples the two differ negligibly, on
small test sets visibly (metrics.md §4).
"""

from __future__ import annotations

import numpy as np


def mean_cov(features: np.ndarray, unbiased: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` in float64 of ``features`` ``(N, D)``; /n, or /(n-1) if unbiased."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {x.shape}")
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (len(x) - 1 if unbiased else len(x))
    return mu, sigma


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh(matrix)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr (S1 S2)^{1/2} for symmetric PSD S1, S2, via the eigenvalues of sqrt(S1) S2 sqrt(S1)."""
    root1 = _sqrt_psd(np.asarray(sigma1, dtype=np.float64))
    inner = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); ``mu`` ``(D,)``, ``sigma`` ``(D, D)`` PSD."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def fid_from_features(features1: np.ndarray, features2: np.ndarray, unbiased: bool = False) -> float:
    """Fréchet distance of two feature sets ``(N1, D)``, ``(N2, D)`` (biased covariance unless ``unbiased``)."""
    return frechet_distance(*mean_cov(features1, unbiased), *mean_cov(features2, unbiased))
