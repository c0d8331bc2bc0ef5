"""The shared instance-discrimination pieces (common.contrastive) and shuffle-BN (common.dist) against hand
computations; InsGen's and InsLoc's heads build on them."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_dist import _env, _free_port

from common import dist
from common.contrastive import dequeue_and_enqueue_, instance_contrastive_loss, momentum_update_

WORKER = Path(__file__).with_name("shuffle_bn_worker.py")


def test_contrastive_loss_matches_closed_form():
    q = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # columns (0, 1) and (-1, 0)
    loss = instance_contrastive_loss(q, q, queue, temperature=1.0)  # logits: 1 (positive), 0, -1
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 1.0 + 1.0 / math.e)), rel=1e-6)
    loss_t = instance_contrastive_loss(q, q, queue, temperature=0.5)  # logits: 2, 0, -2
    assert loss_t.item() == pytest.approx(-math.log(math.e**2 / (math.e**2 + 1.0 + math.e**-2)), rel=1e-6)


def test_contrastive_loss_gradient_matches_formula():
    """dL/dq = (sum_j p_j n_j - k) / tau over n = [k, Q_1..Q_K], p = softmax(q.n / tau)."""
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(1, 8, dtype=torch.float64), dim=1).requires_grad_(True)
    k = torch.nn.functional.normalize(torch.randn(1, 8, dtype=torch.float64), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(8, 5, dtype=torch.float64), dim=0)
    tau = 0.2
    instance_contrastive_loss(q, k, queue, tau).backward()
    candidates = torch.cat([k, queue.t()])  # (1 + K, D)
    probs = torch.softmax(candidates @ q.detach()[0] / tau, dim=0)
    expected = (probs @ candidates - k[0]) / tau
    assert torch.allclose(q.grad[0], expected, atol=1e-12)


def _keys(n: int, offset: float) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3) + offset


def _queue(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(3, size), torch.zeros(1, dtype=torch.long)


def test_queue_pointer_semantics():
    """K = 8, B = 4: pointer 0 -> 4 -> 8 -> 4 (it may equal K and wraps on the next call)."""
    queue, ptr = _queue(8)
    pointers = [int(ptr)]
    for step in range(3):
        dequeue_and_enqueue_(queue, ptr, _keys(4, 100 * step))
        pointers.append(int(ptr))
    assert pointers == [0, 4, 8, 4]
    assert queue[0].tolist() == [200, 201, 202, 203, 100, 101, 102, 103]


def test_queue_wraps_a_batch_across_the_end():
    queue, ptr = _queue(8)
    dequeue_and_enqueue_(queue, ptr, _keys(6, 0))
    dequeue_and_enqueue_(queue, ptr, _keys(4, 10))  # columns 6, 7 then 0, 1
    assert int(ptr) == 2
    assert queue[0].tolist() == [12, 13, 2, 3, 4, 5, 10, 11]


def test_batch_larger_than_queue_overwrites_it_and_keeps_the_pointer():
    queue, ptr = _queue(8)
    dequeue_and_enqueue_(queue, ptr, _keys(3, 0))
    dequeue_and_enqueue_(queue, ptr, _keys(12, 50))
    assert int(ptr) == 3
    assert queue[0].tolist() == [50, 51, 52, 53, 54, 55, 56, 57]


def test_momentum_update_touches_parameters_only():
    source, target = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        source.weight.fill_(2.0)
        source.running_mean.fill_(5.0)
    momentum_update_(target, source, 0.75)
    assert torch.allclose(target.weight, torch.full([3], 0.75 * 1.0 + 0.25 * 2.0))
    assert torch.equal(target.running_mean, torch.zeros(3))


def test_batch_shuffle_is_the_identity_in_one_process():
    x = torch.randn(5, 2)
    shuffled, idx = dist.batch_shuffle(x)
    assert torch.equal(shuffled, x) and torch.equal(dist.batch_unshuffle(shuffled, idx), x)


@pytest.mark.slow
def test_batch_shuffle_mixes_ranks_and_unshuffle_restores_each_rank(tmp_path):
    """2 gloo processes with 4 samples each: rank 0's permutation is used by both, the slices partition the
    global batch, and unshuffle returns every rank's own samples in order (here doubled on the way)."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
              f"--master_port={_free_port()}", str(WORKER), str(tmp_path)]
    result = subprocess.run(launch, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert torch.equal(ranks[0]["idx"], ranks[1]["idx"])  # one permutation for all ranks
    everything = torch.cat([r["shuffled"] for r in ranks]).flatten().sort().values
    assert everything.tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
    torch.manual_seed(100)  # rank 0's RNG state when it drew the permutation
    perm = torch.randperm(8)
    gathered = torch.tensor([0.0, 1, 2, 3, 10, 11, 12, 13])
    assert ranks[0]["shuffled"].flatten().tolist() == gathered[perm[:4]].tolist()
    for rank, state in enumerate(ranks):
        assert state["restored"].flatten().tolist() == [2 * (v + 10 * rank) for v in range(4)]
