"""InsLoc's pretext step: box augmentation on P5 of the query only, the momentum key encoder, per-level InfoNCE and
the per-level queues written at one shared pointer."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

from common.contrastive import instance_contrastive_loss
from insloc.insloc import InsLoc, PretextConfig
from insloc.model import InsLocFPN


def _model(queue: int = 8, momentum: float = 0.5) -> InsLoc:
    torch.manual_seed(0)
    return InsLoc(InsLocFPN(fpn_channels=16, fc=32, dim=8), PretextConfig(queue_size=queue, momentum=momentum), dim=8)


def test_only_the_last_query_level_gets_the_jittered_box():
    model = _model()
    gt = torch.tensor([[20.0, 30.0, 200.0, 220.0], [0.0, 0.0, 160.0, 120.0]])
    boxes = model.query_boxes(gt, (256, 256), torch.Generator().manual_seed(0))
    assert all(torch.equal(b, gt) for b in boxes[:3])
    assert not torch.equal(boxes[3], gt) and (box_iou(boxes[3], gt).diagonal() > 0.5).all()


def test_step_losses_momentum_and_queues_at_one_pointer():
    model = _model()
    images_q, images_k = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    boxes = torch.tensor([[4.0, 8.0, 60.0, 50.0], [10.0, 0.0, 64.0, 64.0]])
    queues_before = model.queues.clone()
    key_before = [p.clone() for p in model.encoder_k.parameters()]
    loss, log = model(images_q, boxes, images_k, boxes, torch.Generator().manual_seed(0))
    loss.backward()
    assert set(log) == {f"{k}_p{level}" for k in ("loss", "acc") for level in (2, 3, 4, 5)}
    assert abs(float(loss.detach()) - sum(log[f"loss_p{level}"] for level in (2, 3, 4, 5))) < 1e-4
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert all(p.grad is not None for p in model.encoder_q.head.parameters())
    for before, p_k, p_q in zip(key_before, model.encoder_k.parameters(), model.encoder_q.parameters()):
        assert torch.allclose(p_k, 0.5 * before + 0.5 * p_q.detach())  # EMA before the key forward (MoCo order)
    assert int(model.queue_ptr) == 2
    assert torch.equal(model.queues[:, :, 2:], queues_before[:, :, 2:])  # only the first two columns written
    with torch.no_grad():
        keys = model.keys(images_k, boxes, None)
    # the written columns are the unit key embeddings of each level (BN in train mode: recomputed keys match)
    assert torch.allclose(model.queues[:, :, :2].norm(dim=1), torch.ones(4, 2), atol=1e-5)
    assert torch.allclose(model.queues[:, :, :2], keys.transpose(1, 2), atol=1e-5)
    model(images_q, boxes, images_k, boxes)
    assert int(model.queue_ptr) == 4


def test_level_loss_is_mocos_infonce_over_that_levels_queue():
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    k = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(8, 5), dim=0)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue], 1) / 0.2
    expected = -(logits[:, 0] - logits.logsumexp(1)).mean()
    assert torch.allclose(instance_contrastive_loss(q, k, queue, 0.2), expected)
