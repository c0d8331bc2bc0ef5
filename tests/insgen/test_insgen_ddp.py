"""InsGen under torchrun (2 processes, gloo): heads, D_ema and queues stay identical on both ranks, and the queues
receive the keys of the whole global batch (all-gathered before the enqueue, as the official code)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

_SCRIPT = Path(__file__).parents[1] / "common" / "ddp_gan_train.py"
_spec = importlib.util.spec_from_file_location("ddp_gan_train", _SCRIPT)
ddp_gan_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ddp_gan_train)


@pytest.mark.slow
def test_insgen_ranks_stay_identical_and_queues_gather(tmp_path):
    result = ddp_gan_train.launch(tmp_path, "--insgen")
    assert result.returncode == 0, result.stderr[-3000:]
    states = ddp_gan_train.rank_states(tmp_path)
    assert {"D_ema", "real_head", "fake_head", "view_augment"} <= set(states)
    # 3 Dmain calls x global batch 8 (2 ranks x 4) into queues of 32: pointer 24 (per-rank keys only would give 12)
    assert int(states["real_head"]["queue_ptr"]) == 24 and int(states["fake_head"]["queue_ptr"]) == 24
    assert not torch.equal(states["D_ema"]["b4.out.weight"], states["D"]["b4.out.weight"])
