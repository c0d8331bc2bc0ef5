"""InsGen's instance discrimination: projection heads with momentum copies, negative queues, InfoNCE (paper Sec. 3.2).

Semantics follow genforce/insgen ``training/contrastive_head.py`` (spec insgen.md §2, §9), MoCo-v2 style:

- a head is ``mlp = Linear(C, C) - ReLU - Linear(C, 128)``; its momentum copy is built the same way (so the init
  consumes the same RNG as the official head) and then overwritten with the head's weights;
- every forward first moves the momentum copy: phi' <- m phi' + (1 - m) phi (also in the loss-only G-side call);
- features ``[N, C, H, W]`` are averaged over space and cast to float32 before the MLP; outputs are L2-normalised;
- the loss is InfoNCE over ONE positive key and the queue as negatives (other batch items are not negatives);
- the queue ``[128, K]`` starts as normalised N(0, 1) columns and is a ring buffer whose pointer may equal K before
  it wraps on the next call; a batch larger than K overwrites the whole queue with its first K keys.

The loss, the momentum update and the queue write are the shared ones of :mod:`common.contrastive` (InsLoc uses
them too).

Differences from the official code, by design: all-gathers are no-ops in one process (the official head calls
``torch.distributed.all_gather`` unconditionally and crashes on one GPU or CPU, genforce/insgen issues #2/#5), and the
loss labels live on the features' device (the official ``.cuda()`` fails on CPU). The official MoCo batch shuffle
is omitted: it only matters for BatchNorm, and the heads have none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.contrastive import dequeue_and_enqueue_, instance_contrastive_loss, momentum_update_

HEAD_FEATURES = "b8"  # D's last block output, [N, C, 4, 4] (official ``D(..., return_feats=True)``)
PROJECTION_DIM = 128  # official: the second Linear maps to 128


def default_queue_size(num_images: int, mirror: bool) -> int:
    """Official ``train.py``: K = int(0.05 * N) * (2 if --mirror else 1), N = images after ``--subset``."""
    return int(0.05 * num_images) * (2 if mirror else 1)


class InstanceDiscriminationHead(nn.Module):
    """One contrastive head (official ``CLHead``): projection MLP, its momentum copy and a queue of keys.

    ``inplanes`` is the channel count of D's last block (512 in every official config; the official ``train.py``
    hard-codes it, here it follows the network). Trainable parameters C*C + C + 128*C + 128 (328,320 at C = 512),
    plus as many frozen ones in the momentum copy.
    """

    def __init__(self, inplanes: int, temperature: float = 0.2, queue_size: int = 3500, momentum: float = 0.999):
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.inplanes, self.temperature, self.queue_size, self.momentum = inplanes, temperature, queue_size, momentum
        self.mlp = _projection(inplanes)
        self.momentum_mlp = _projection(inplanes)
        self.momentum_mlp.load_state_dict(self.mlp.state_dict())
        self.momentum_mlp.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(PROJECTION_DIM, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def forward(
        self, query_feats: Tensor, key_feats: Tensor, loss_only: bool = False, enqueue_query: bool = False
    ) -> Tensor:
        """InfoNCE of mlp(query_feats) against momentum_mlp(key_feats) and the queue; returns the scalar loss.

        query_feats, key_feats: (N, C, H, W) or (N, C). Unless ``loss_only``, enqueues the keys afterwards, or with
        ``enqueue_query`` the momentum projection of the *query* features (official ``update_q``, used by the fake
        term C_D^f). The queue enters the loss as it was before this call.
        """
        self.momentum_update()
        q = F.normalize(self.mlp(_pool(query_feats)), dim=1)
        with torch.no_grad():
            k = F.normalize(self.momentum_mlp(_pool(key_feats)), dim=1)
        loss = instance_contrastive_loss(q, k, self.queue.clone().detach(), self.temperature)
        if not loss_only:
            with torch.no_grad():
                enqueued = F.normalize(self.momentum_mlp(_pool(query_feats.detach())), dim=1) if enqueue_query else k
            self.enqueue(enqueued)
        return loss

    @torch.no_grad()
    def momentum_update(self) -> None:
        """phi' <- m phi' + (1 - m) phi (official ``_momentum_update_key_encoder``)."""
        momentum_update_(self.momentum_mlp, self.mlp, self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (N, 128) of every rank into the ring buffer at the pointer (official semantics above)."""
        dequeue_and_enqueue_(self.queue, self.queue_ptr, keys)


def _projection(inplanes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inplanes, inplanes), nn.ReLU(), nn.Linear(inplanes, PROJECTION_DIM))


def _pool(feats: Tensor) -> Tensor:
    feats = feats.to(torch.float32)
    return feats.mean(dim=[2, 3]) if feats.ndim > 2 else feats
