"""The MoCo v2 baseline: the ResNet-50 + MLP head count, one queue, momentum key encoder, two views."""

from __future__ import annotations

import numpy as np
import torch

from insloc.moco import MoCoV2, MoCoViews, moco_encoder


def test_moco_v2_encoder_count_and_step():
    with torch.device("meta"):
        assert sum(p.numel() for p in moco_encoder().parameters()) == 27_966_656
    torch.manual_seed(0)
    model = MoCoV2(moco_encoder(dim=16), dim=16, queue_size=8, momentum=0.5)
    before = [p.clone() for p in model.encoder_k.parameters()]
    queue = model.queue.clone()
    images = torch.randn(2, 3, 64, 64)
    loss, log = model(images, images + 0.1 * torch.randn_like(images))
    loss.backward()
    assert torch.isfinite(loss) and set(log) == {"loss", "acc"}
    assert all(p.grad is None for p in model.encoder_k.parameters())
    for b, k, q in zip(before, model.encoder_k.parameters(), model.encoder_q.parameters()):
        assert torch.allclose(k, 0.5 * b + 0.5 * q.detach())
    assert int(model.queue_ptr) == 2 and torch.equal(model.queue[:, 2:], queue[:, 2:])
    assert torch.allclose(model.queue[:, :2].norm(dim=0), torch.ones(2), atol=1e-5)


def test_two_views_of_one_image():
    image = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    torch.manual_seed(0)
    a, b = MoCoViews(size=32)(image, np.random.default_rng(1))
    assert a.shape == b.shape == (3, 32, 32) and not torch.equal(a, b)
