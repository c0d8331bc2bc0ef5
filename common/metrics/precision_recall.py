"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

Protocol of stylegan2-ada-pytorch ``metrics/precision_recall.py`` (``pr50k3_full``: 200k real, 50k generated,
k = 3, VGG16 features): features are cast to float16; the radius of each point of a manifold is its distance to
the (k+1)-th nearest point of the same set (the point itself is the first, at distance 0); precision is the
fraction of generated points inside some real point's radius, recall the fraction of real points inside some
generated point's radius. Distances are computed in row/column blocks (10,000 in the official code). The
official runs ``torch.cdist`` in float16 on the GPU; here the distances of the float16 features are computed in
float32 and rounded to float16 before comparing, which agrees to float16 resolution.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _distances(rows: Tensor, cols: Tensor, col_batch: int) -> Tensor:
    """float16 Euclidean distances ``(len(rows), len(cols))``, each column block computed in float32."""
    return torch.cat([torch.cdist(rows.float(), c.float()).half() for c in cols.split(col_batch)], dim=1)


def _coverage(manifold: Tensor, probes: Tensor, k: int, row_batch: int, col_batch: int) -> float:
    """Fraction of ``probes`` within the k-NN radius of at least one ``manifold`` point."""
    radii = torch.cat([_distances(rows, manifold, col_batch).float().kthvalue(k + 1, dim=1).values.half()
                       for rows in manifold.split(row_batch)])
    inside = [(_distances(rows, manifold, col_batch) <= radii).any(dim=1) for rows in probes.split(row_batch)]
    return torch.cat(inside).float().mean().item()


def precision_recall(
    real_features: Tensor, fake_features: Tensor, k: int = 3, row_batch: int = 10000, col_batch: int = 10000
) -> tuple[float, float]:
    """(precision, recall) of generated ``fake_features`` ``(Nf, D)`` against ``real_features`` ``(Nr, D)``."""
    real = torch.as_tensor(real_features).half()
    fake = torch.as_tensor(fake_features).half()
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} features per set")
    return _coverage(real, fake, k, row_batch, col_batch), _coverage(fake, real, k, row_batch, col_batch)
