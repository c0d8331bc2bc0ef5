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


def test_pooled_resnet_is_torchvisions_resnet50_at_the_defaults():
    from torchvision.models import resnet50

    from insloc.moco import PooledResNet

    reference, ours = resnet50(num_classes=16), PooledResNet(16)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(reference.eval()(x), ours.eval()(x))


def test_tiny_moco_uses_the_tiny_trunk():
    from common.config import load_config
    from insloc.config import InsLocConfig, config_path
    from insloc.training import build_model

    cfg = load_config(InsLocConfig, config_path("tiny"), ["method=moco"])
    encoder = build_model(cfg).encoder_q
    assert encoder.layer4[0].conv1.in_channels == 64 and encoder.fc[2].out_features == cfg.model.dim
