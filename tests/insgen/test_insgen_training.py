"""A short CPU run of the tiny preset with InsGen on: finite terms, filled queues, exact resume, the CLI."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from common.checkpoint import load_checkpoint
from common.config import load_config
from common.data.synthetic import digits_dataset
from common.stylegan2.evaluate import run_mirror
from common.stylegan2.training import replace_cfg, train
from insgen.config import InsGenConfig, config_path
from insgen.eval import main as eval_main
from insgen.method import InsGen
from insgen.train import main as train_main

MODULES = ("G", "D", "G_ema", "D_ema", "real_head", "fake_head", "view_augment")


def _cfg() -> InsGenConfig:
    cfg = load_config(InsGenConfig, config_path("tiny"))
    return replace_cfg(
        cfg,
        G={"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16},
        D={"channel_base": 128, "channel_max": 16},
        optim={"d_reg_interval": 4},
        train={"batch": 8, "total_kimg": 0.08, "kimg_per_tick": 0.04, "snap_ticks": 1, "metrics": ["none"]},
        insgen={"real_queue_size": 12, "fake_queue_size": 12},
        probe={"every": 0},
    )


def _state(state) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n in MODULES for k, v in state.modules[n].state_dict().items()}


def test_tiny_insgen_run_fills_queues_and_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _cfg()
    straight = train(cfg, tmp_path / "straight", method=InsGen())
    assert straight.batch_idx == 10
    # 10 Dmain calls of 8 keys into a ring of 12: pointer 8, 16 -> wraps ... = 80 mod 12 = 8; every column written
    for head in ("real_head", "fake_head"):
        module = straight.modules[head]
        assert int(module.queue_ptr) == 80 % 12
        assert torch.allclose(module.queue.norm(dim=0), torch.ones(12), atol=1e-5)
    records = [json.loads(line) for line in (tmp_path / "straight" / "stats.jsonl").read_text().splitlines()]
    for key in ("Loss/D_cl", "Loss/G_cl", "Loss/G_cl_on_g", "Loss/D/loss", "Loss/G/loss"):
        assert all(torch.isfinite(torch.tensor(r[key])) for r in records), key

    first = train(cfg, tmp_path / "split", method=InsGen(), max_iterations=4)
    assert first.batch_idx == 4
    resumed = train(cfg, tmp_path / "split2", method=InsGen(), resume=tmp_path / "split")
    assert resumed.batch_idx == 10
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("real_head", "fake_head"):
        assert straight.optimizers[name].state_dict()["state"].keys() == resumed.optimizers[name].state_dict()[
            "state"
        ].keys()

    snapshot = load_checkpoint(sorted((tmp_path / "straight").glob("snapshot-*.pt"))[-1])
    assert set(MODULES) <= set(snapshot["modules"])
    assert {"G", "D", "real_head", "fake_head"} <= set(snapshot["optimizers"])


def test_cli_trains_a_row_by_name_and_reports_bad_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    args = ["--cfg", "tiny", "--outdir", str(tmp_path / "runs"), "--set", "train.total_kimg=0.064",
            "--set", "train.batch=32", "--set", "train.metrics=[none]", "--set", "probe.every=0"]
    result = runner.invoke(train_main, args)
    assert result.exit_code == 0, result.output
    assert "done: 0.1 kimg" in result.output
    run_dir = next((tmp_path / "runs").iterdir())
    assert "insgen:" in (run_dir / "config.yaml").read_text()
    bad = runner.invoke(train_main, ["--cfg", "tiny", "--set", "insgen.queue=5"])
    assert bad.exit_code == 2 and "insgen.queue" in bad.output and "real_queue_size" in bad.output
    missing = runner.invoke(train_main, ["--cfg", "ffhq3k"])
    assert missing.exit_code == 2 and "not found" in missing.output
    no_data = runner.invoke(train_main, ["--cfg", "ffhq2k", "--outdir", str(tmp_path / "r2")])
    assert no_data.exit_code == 1 and "data.path is not set" in no_data.output

    # eval: the reference's x-flips follow the run's data.mirror; missing Inception weights are one clear line
    assert run_mirror(next(run_dir.glob("snapshot-*.pt"))) is False
    data = str(digits_dataset(resolution=16))
    missing = tmp_path / "nope.pth"
    result = runner.invoke(eval_main, ["--ckpt", str(run_dir), "--data", data, "--inception-weights", str(missing)])
    assert result.exit_code == 1 and f"{missing} does not exist" in result.output
    result = runner.invoke(eval_main, ["--ckpt", str(run_dir), "--data", str(tmp_path / "none.zip")])
    assert result.exit_code == 1 and "does not exist" in result.output
