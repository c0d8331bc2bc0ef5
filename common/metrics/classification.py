"""Top-k accuracy for image probes and video classification, clip-level and video-level (metrics.md §7).

top-k accuracy = mean over samples of [label in the k highest scores]. Video-level (the number papers report):
the V views of a video (temporal clips x spatial crops) are averaged into one score vector first, as mmaction2's
``average_clips``: ``'prob'`` averages softmax probabilities, ``'score'`` averages raw scores; then top-k.
Clip-level counts every view as its own sample (quick validation). Ties are broken by ``torch.topk`` arbitrarily.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def topk_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """``{k: fraction of rows of scores (N, C) whose label is among the k largest}``."""
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"need scores (N, C) and labels (N,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= scores.shape[1]]
    if not ks or bad:
        raise ValueError(f"top-k needs integers 1 <= k <= {scores.shape[1]} (the number of classes), got {list(ks)}")
    top = scores.topk(max(ks), dim=1).indices
    hits = top == labels.view(-1, 1)
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def average_views(view_scores: Tensor, average: str = "prob") -> Tensor:
    """``(V, num_views, C)`` per-view scores -> ``(V, C)``: mean of softmax (``'prob'``) or of raw scores."""
    view_scores = torch.as_tensor(view_scores)
    if average == "prob":
        return view_scores.float().softmax(dim=-1).mean(dim=1)
    if average == "score":
        return view_scores.float().mean(dim=1)
    raise ValueError(f"average must be 'prob' or 'score' (mmaction2 average_clips), got {average!r}")


def video_topk_accuracy(view_scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5),
                        average: str = "prob") -> dict[int, float]:
    """Video-level top-k of ``(V, num_views, C)`` scores against ``(V,)`` labels."""
    return topk_accuracy(average_views(view_scores, average), labels, ks)


def clip_topk_accuracy(view_scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Clip-level top-k: each of the ``(V, num_views, C)`` views is a sample labelled with its video's label."""
    view_scores = torch.as_tensor(view_scores)
    v, n, c = view_scores.shape
    return topk_accuracy(view_scores.reshape(v * n, c), torch.as_tensor(labels).repeat_interleave(n), ks)
