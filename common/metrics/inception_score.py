"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over splits.

Protocol of stylegan2-ada-pytorch ``metrics/inception_score.py`` (``is50k``): class probabilities are the softmax
of the TF Inception's 1008-way logits WITHOUT the output bias (``no_output_bias=True``; see
``InceptionExtractor.probabilities``), 50k samples in 10 consecutive splits, p(y) the mean over each split.
0 log 0 is taken as 0 (``xlogy``), where the official code returns NaN for a probability that underflows to 0.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy


def inception_score(probabilities: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the split-wise IS of ``probabilities`` ``(N, K)`` (rows sum to 1)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    n = len(probs)
    if n < num_splits:
        raise ValueError(f"{n} samples cannot fill {num_splits} splits")
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits: (i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
