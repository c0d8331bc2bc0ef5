"""InsGen heads and queues against hand computations and the spec's parity facts (insgen.md §9)."""

from __future__ import annotations

import pytest
import torch

from insgen.contrastive import InstanceDiscriminationHead, default_queue_size


def test_head_parameter_counts():
    head = InstanceDiscriminationHead(512)
    trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in head.parameters() if not p.requires_grad)
    assert trainable == frozen == 328_320  # spec §3: 656,640 trainable head params for the two heads
    small = InstanceDiscriminationHead(16, queue_size=8)
    assert sum(p.numel() for p in small.mlp.parameters()) == 2_448
    assert small.queue.shape == (128, 8)
    assert torch.allclose(small.queue.norm(dim=0), torch.ones(8))


def test_loss_at_init_matches_official_value():
    """Spec §9: seed 0, CLHead(16, tau 0.2, m 0.999, K 8), query = key = randn(4, 16, 4, 4) -> 0.04363."""
    torch.manual_seed(0)
    head = InstanceDiscriminationHead(16, temperature=0.2, queue_size=8, momentum=0.999)
    x = torch.randn(4, 16, 4, 4)
    assert head(x, x).item() == pytest.approx(0.04363, abs=5e-6)


def test_positive_logit_is_one_over_tau_at_init():
    torch.manual_seed(1)
    head = InstanceDiscriminationHead(16, temperature=0.2, queue_size=8)
    x = torch.randn(4, 16)
    q = torch.nn.functional.normalize(head.mlp(x), dim=1)
    k = torch.nn.functional.normalize(head.momentum_mlp(x), dim=1)
    assert torch.allclose((q * k).sum(1) / 0.2, torch.full([4], 5.0))


def _keys(n: int, offset: float) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 128) + offset


def test_queue_pointer_semantics():
    """K = 8, B = 4: pointer 0 -> 4 -> 8 -> 4 (it may equal K and wraps on the next call)."""
    head = InstanceDiscriminationHead(16, queue_size=8)
    pointers = [int(head.queue_ptr)]
    for step in range(3):
        head.enqueue(_keys(4, 100 * step))
        pointers.append(int(head.queue_ptr))
    assert pointers == [0, 4, 8, 4]
    assert head.queue[0].tolist() == [200, 201, 202, 203, 100, 101, 102, 103]


def test_queue_wraps_a_batch_across_the_end():
    head = InstanceDiscriminationHead(16, queue_size=8)
    head.enqueue(_keys(6, 0))
    head.enqueue(_keys(4, 10))  # columns 6, 7 then 0, 1
    assert int(head.queue_ptr) == 2
    assert head.queue[0].tolist() == [12, 13, 2, 3, 4, 5, 10, 11]


def test_batch_larger_than_queue_overwrites_it_and_keeps_the_pointer():
    head = InstanceDiscriminationHead(16, queue_size=8)
    head.enqueue(_keys(3, 0))
    head.enqueue(_keys(12, 50))
    assert int(head.queue_ptr) == 3
    assert head.queue[0].tolist() == [50, 51, 52, 53, 54, 55, 56, 57]


def test_default_queue_sizes():
    assert default_queue_size(2000, mirror=True) == 200
    assert default_queue_size(10000, mirror=True) == 1000
    assert default_queue_size(70000, mirror=True) == 7000
    assert default_queue_size(5153, mirror=True) == 514  # AFHQ-Cat
    assert default_queue_size(100, mirror=False) == 5
    assert default_queue_size(19, mirror=False) == 0  # the empty queue the spec warns about


def test_every_forward_moves_the_momentum_head_first():
    torch.manual_seed(0)
    head = InstanceDiscriminationHead(16, queue_size=8, momentum=0.9)
    with torch.no_grad():
        for p in head.mlp.parameters():
            p.add_(1.0)
    before = [p.clone() for p in head.momentum_mlp.parameters()]
    x = torch.randn(4, 16)
    head(x, x, loss_only=True)  # the loss-only G-side call moves it too (official)
    for p_m, p, b in zip(head.momentum_mlp.parameters(), head.mlp.parameters(), before):
        assert torch.allclose(p_m, 0.9 * b + 0.1 * p)
    assert int(head.queue_ptr) == 0  # loss_only enqueues nothing


def test_fake_term_enqueues_the_momentum_projection_of_the_query():
    torch.manual_seed(0)
    head = InstanceDiscriminationHead(16, queue_size=8)
    query, key = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    head(query, key, enqueue_query=True)
    expected = torch.nn.functional.normalize(head.momentum_mlp(query.mean(dim=[2, 3])), dim=1)
    assert torch.allclose(head.queue[:, :2].t(), expected, atol=1e-6)
    head(query, key)
    expected_key = torch.nn.functional.normalize(head.momentum_mlp(key.mean(dim=[2, 3])), dim=1)
    assert torch.allclose(head.queue[:, 2:4].t(), expected_key, atol=1e-6)
