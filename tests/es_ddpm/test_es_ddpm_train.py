"""DDPM trainer: loss decreases on tiny digits, bit-exact resume, truncated t ~ U{0..T'-1}, lr/EMA closed forms, and
one-line errors for bad config values."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from common.config import ConfigError, load_config
from common.logging import read_scalars
from es_ddpm.config import ESDDPMConfig, config_path
from es_ddpm.train import learning_rate, main, sample_timesteps, train_ddpm, update_ema


def _cfg(**train) -> ESDDPMConfig:
    cfg = load_config(ESDDPMConfig, config_path("tiny"))
    values = dict(batch=32, warmup_steps=5, log_every=1, snapshot_every=1000, iterations=60)
    values.update(train)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **values))


def test_tiny_training_decreases_the_loss(tmp_path):
    train_ddpm(_cfg(), tmp_path)
    losses = [r["loss"] for r in read_scalars(tmp_path / "stats.jsonl")]
    assert len(losses) == 60
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_resume_continues_bit_for_bit(tmp_path):
    cfg = _cfg(iterations=6, snapshot_every=3)
    train_ddpm(cfg, tmp_path / "straight")
    train_ddpm(cfg, tmp_path / "split", max_iterations=3)
    train_ddpm(cfg, tmp_path / "split", resume=tmp_path / "split")
    a = torch.load(tmp_path / "straight" / "snapshot-000000006.pt", weights_only=True)["modules"]
    b = torch.load(tmp_path / "split" / "snapshot-000000006.pt", weights_only=True)["modules"]
    for name in ("model", "ema"):
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name])


def test_truncated_training_draws_t_below_t_prime():
    torch.manual_seed(0)
    t = sample_timesteps(20_000, 1000, 100, torch.device("cpu"))
    assert t.min() == 0 and t.max() == 99
    assert abs(t.float().mean().item() - 49.5) < 1.0
    assert sample_timesteps(20_000, 1000, None, torch.device("cpu")).max() > 900


def test_learning_rate_and_ema_closed_forms():
    cfg = _cfg(lr=1e-3, warmup_steps=10, lr_anneal_steps=100)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 50) == pytest.approx(1e-3 * 0.5)
    assert learning_rate(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr_anneal_steps=0)), 500) == 1e-3
    model, ema = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(1.0)
    ema.weight.data.fill_(0.0)
    update_ema(model, ema, 0.9)
    assert ema.weight.item() == pytest.approx(0.1)


def test_bad_values_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="max_timestep=2000 must be in 1..1000"):
        train_ddpm(_cfg(max_timestep=2000), tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["--cfg", "tiny", "--set", "train.lr_g=1", "--outdir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown config key 'lr_g'" in result.output
    result = runner.invoke(main, ["--cfg", "tiny", "--set", "model.image_size=32", "--outdir", str(tmp_path)])
    assert result.exit_code == 1 and "expects 1x32px" in result.output and "Traceback" not in result.output
    for value, message in (("train.snapshot_every=0", "train.snapshot_every=0 must be >= 1"),
                           ("train.batch=0", "train.batch=0 must be >= 1"),
                           ("train.lr=nan", "must be a finite number > 0")):
        result = runner.invoke(main, ["--cfg", "tiny", "--set", value, "--outdir", str(tmp_path)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, value
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # the failed starts left no run dir behind
