from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from common import checkpoint
from common.checkpoint import CheckpointError, CheckpointManager

TOY = Path(__file__).with_name("toy_train.py")
REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_capture_restore_round_trip_with_rng_and_extra(tmp_path):
    torch.manual_seed(0)
    model, ema = _model(), _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    queue = torch.randn(16, 8)
    state = checkpoint.capture(7, {"G": model, "G_ema": ema}, {"opt": optimizer}, extra={"queue": queue, "p": 0.25})
    path = CheckpointManager(tmp_path).save(state)
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())

    model2, ema2 = _model(), _model()
    optimizer2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    step, extra = checkpoint.restore(
        checkpoint.load_checkpoint(path), {"G": model2, "G_ema": ema2}, {"opt": optimizer2}
    )
    assert step == 7 and extra["p"] == 0.25 and torch.equal(extra["queue"], queue)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], optimizer2.state_dict()["state"][0]["exp_avg"])
    # RNG streams continue exactly where the capture left them
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert __import__("random").random() == expected[2]


def test_mismatched_checkpoint_lists_missing_unexpected_and_shapes(tmp_path):
    state = checkpoint.capture(1, {"G": _model()})
    wider = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError) as err:
        checkpoint.restore(state, {"G": wider}, restore_rng=False)
    message = str(err.value)
    assert "does not fit module 'G'" in message
    assert "missing keys: 3.bias, 3.weight" in message
    assert "0.weight: checkpoint (3, 4) vs model (5, 4)" in message
    with pytest.raises(CheckpointError, match="has no module named D"):
        checkpoint.restore(state, {"D": _model()}, restore_rng=False)


def test_foreign_and_corrupt_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        checkpoint.load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a genforce-papers snapshot"):
        checkpoint.load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "genforce-checkpoint", "obj": np.random.default_rng(0)}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="weights-only load refuses"):
        checkpoint.load_checkpoint(tmp_path / "code.pt")
    good = checkpoint.atomic_save(checkpoint.capture(1, {"G": _model()}), tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load_checkpoint(tmp_path / "cut.pt")


def test_refusals_never_advise_an_unsafe_load(tmp_path):
    """Random bytes and a pickle naming os.system: one line that says what was refused, without torch's advice to
    retry with weights_only=False (which would run the file's code)."""
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(300))
    (tmp_path / "payload.pt").write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    for name in ("random.pt", "payload.pt"):
        for load in (checkpoint.load_checkpoint, checkpoint.read_weights):
            with pytest.raises(CheckpointError) as caught:
                load(tmp_path / name)
            message = str(caught.value)
            assert name in message and "\n" not in message
            assert "weights_only` set to `False`" not in message and "weights_only=False" not in message
            assert "trusted source" not in message and "you have two options" not in message
    with pytest.raises(CheckpointError, match="refuses"):
        checkpoint.read_weights(tmp_path / "payload.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "state.pt")
    assert torch.equal(checkpoint.read_weights(tmp_path / "state.pt")["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="no file at"):
        checkpoint.read_weights(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("junk\n")  # torch.load would raise a KeyError on this one
    (tmp_path / "empty.pt").write_bytes(b"")
    for load in (checkpoint.load_checkpoint, checkpoint.read_weights):
        with pytest.raises(CheckpointError, match="is not a PyTorch file"):
            load(tmp_path / "text.pt")
        with pytest.raises(CheckpointError, match="is empty"):
            load(tmp_path / "empty.pt")


def test_another_packages_snapshot_names_its_modules(tmp_path):
    path = checkpoint.atomic_save(checkpoint.capture(1, {"G": _model()}), tmp_path / "gan.pt")
    ckpt = checkpoint.load_checkpoint(path)
    assert set(checkpoint.saved_module(ckpt, "G", str(path))) == set(_model().state_dict())
    with pytest.raises(CheckpointError, match="has no module named ema \\(it has: G\\); is it a snapshot of another"):
        checkpoint.saved_module(ckpt, "ema", str(path))


def test_keep_last_n_and_resolve_resume(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30):
        manager.save(checkpoint.capture(step, {"G": _model()}))
    assert [p.name for p in manager.snapshots()] == ["snapshot-000000020.pt", "snapshot-000000030.pt"]
    assert checkpoint.resolve_resume(tmp_path) == tmp_path / "snapshot-000000030.pt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no snapshot"):
        checkpoint.resolve_resume(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="^--ckpt .*missing: no such file"):  # the flag the user typed
        checkpoint.resolve_resume(tmp_path / "missing", flag="--ckpt")


def test_sigkill_between_snapshots_then_resume_is_bitwise_identical(tmp_path):
    common = ["--steps", "30", "--batch", "8", "--snap-every", "10", "--noise"]
    straight = tmp_path / "straight"
    subprocess.run(
        [sys.executable, str(TOY), "--outdir", str(straight), *common], env=ENV, check=True, capture_output=True
    )

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(TOY), "--outdir", str(run), *common, "--sleep", "0.05"],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.strip() == "step 15":
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "final.pt").exists()
    assert CheckpointManager(run).latest().name in ("snapshot-000000010.pt", "snapshot-000000020.pt")

    subprocess.run(
        [sys.executable, str(TOY), "--outdir", str(run), *common, "--resume"], env=ENV, check=True, capture_output=True
    )
    a = torch.load(straight / "final.pt", weights_only=True)
    b = torch.load(run / "final.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


_KILL_MID_WRITE = textwrap.dedent("""
    import sys, time, torch
    from torch import nn
    from common import checkpoint
    manager = checkpoint.CheckpointManager(sys.argv[1])
    manager.save(checkpoint.capture(1, {"G": nn.Linear(2, 2)}))
    def half_write(obj, f):  # a save that dies half way: some bytes reach the temporary file
        f.write(b"PK\\x03\\x04 partial")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
    torch.save = half_write
    manager.save(checkpoint.capture(2, {"G": nn.Linear(2, 2)}))
""")


def test_save_killed_mid_write_leaves_previous_snapshot_latest(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_MID_WRITE, str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    manager = CheckpointManager(tmp_path)
    assert [p.name for p in manager.snapshots()] == ["snapshot-000000001.pt"]
    assert checkpoint.load_checkpoint(manager.latest())["step"] == 1
    leftovers = list(tmp_path.glob(".snapshot-*.tmp-*"))
    assert len(leftovers) == 1  # the dead writer's temp file, never taken for a snapshot
    time.sleep(0.1)
    manager.save(checkpoint.capture(3, {"G": nn.Linear(2, 2)}))
    assert not any(tmp_path.glob(".snapshot-*.tmp-*"))  # cleaned once its writer is gone


def test_resume_skips_a_truncated_latest_snapshot_and_says_so(tmp_path, capsys):
    manager = checkpoint.CheckpointManager(tmp_path, keep_last=5)
    for step in (10, 20, 30):
        manager.save(checkpoint.capture(step, {"G": _model()}))
    latest = tmp_path / "snapshot-000000030.pt"
    latest.write_bytes(latest.read_bytes()[:300])  # a cut-off copy
    assert checkpoint.resolve_resume(tmp_path) == tmp_path / "snapshot-000000020.pt"
    assert "snapshot-000000030.pt truncated or corrupt; using snapshot-000000020.pt" in capsys.readouterr().out
    assert latest.is_file()  # left in place: training past step 30 replaces it
    for step in (10, 20):
        (tmp_path / f"snapshot-{step:09d}.pt").write_bytes(b"")
    with pytest.raises(checkpoint.CheckpointError, match="every snapshot-\\*.pt snapshot there is truncated"):
        checkpoint.resolve_resume(tmp_path)
