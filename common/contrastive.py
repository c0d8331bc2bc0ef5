"""Instance-discrimination pieces shared by InsGen and InsLoc (MoCo, He et al. CVPR 2020; MoCo v2 details).

- :func:`instance_contrastive_loss`: InfoNCE over one positive key and a queue of negatives (MoCo Eq. 1);
- :func:`momentum_update_`: theta_k <- m theta_k + (1 - m) theta_q, parameters only;
- :func:`dequeue_and_enqueue_`: the ring-buffer queue of keys, gathered over every rank first
  (facebookresearch/moco ``builder.py: _dequeue_and_enqueue``, with genforce/insgen's wrap-around).

The shuffle-BN helpers (``batch_shuffle`` / ``batch_unshuffle``) live in :mod:`common.dist`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import dist


def instance_contrastive_loss(query: Tensor, key: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """InfoNCE over one positive key and a queue of negatives (InsGen Eq. 2; MoCo Eq. 1).

    query, key: (N, D) L2-normalised; queue: (D, K) L2-normalised negatives (columns). Mean over the batch of
    -log( exp(q.k / tau) / (exp(q.k / tau) + sum_j exp(q.Q_j / tau)) ). Other batch items are not negatives.
    """
    positive = (query * key).sum(dim=1, keepdim=True)
    negatives = query @ queue
    logits = torch.cat([positive, negatives], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long, device=query.device))


@torch.no_grad()
def momentum_update_(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * source, parameters only (buffers untouched), in place.

    MoCo's key encoder update; InsGen's D_ema (once per iteration) and momentum heads.
    """
    for p_target, p_source in zip(target.parameters(), source.parameters()):
        p_target.mul_(momentum).add_(p_source.detach(), alpha=1 - momentum)


@torch.no_grad()
def dequeue_and_enqueue_(queue: Tensor, queue_ptr: Tensor, keys: Tensor) -> None:
    """Write ``keys`` (N, D) of every rank into ``queue`` (D, K) at ``queue_ptr`` (a 1-element long tensor).

    Semantics of genforce/insgen ``contrastive_head.py``: the pointer may equal K until the next call wraps it; a
    batch that does not fit before the end is split and continues at column 0; a batch larger than K overwrites
    the whole queue with its first K keys (pointer unchanged). MoCo itself requires K % N == 0 and never splits.
    """
    keys = dist.all_gather_cat(keys.detach()).t().to(queue.dtype)
    batch, size, ptr = keys.shape[1], queue.shape[1], int(queue_ptr)
    if batch > size:
        queue.copy_(keys[:, :size])
        return
    if ptr + batch > size:
        head = size - ptr
        queue[:, ptr:] = keys[:, :head]
        queue[:, : batch - head] = keys[:, head:]
        queue_ptr[0] = batch - head
    else:
        queue[:, ptr : ptr + batch] = keys
        queue_ptr[0] = ptr + batch
