"""GH-Feat under torchrun (2 processes, gloo): E's and D's weights stay identical on both ranks after E and D steps
(DDP; on CPU BatchNorm normalises per process and DDP broadcasts rank 0's moving statistics at each E step, as
SyncBatchNorm needs GPUs), and the snapshot is written once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan

_SCRIPT = Path(__file__).with_name("ddp_ghfeat_train.py")


@pytest.mark.slow
def test_two_ranks_train_identical_encoders(tmp_path):
    source = pretrained_source_gan(SourceTraining(total_kimg=0.032))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={port}", str(_SCRIPT), "--outdir", str(tmp_path), "--source", str(source)]
    env = {**os.environ, "GENFORCE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["step"] == rank1["step"] == 3
    for module in ("E", "D"):
        for key, value in rank0[module].items():
            if "running_" not in key:  # CPU BatchNorm: each rank's last update is local (rank 0's is saved)
                assert torch.equal(value, rank1[module][key]), f"{module}.{key} differs between ranks"
    assert rank0["E"]["stem_bn.num_batches_tracked"] == 6  # both forward passes of each iteration (E step, D step)
    assert len(list((tmp_path / "run").glob("snapshot-*.pt"))) == 1
