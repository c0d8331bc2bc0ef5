"""EqGAN-SA on the shared loop: a short run logs L_align and DI and resumes exactly; the ablation rows are flags (the
official --align_loss=False crash fixed); DI of a snapshot; configs of every row; CLI errors in one line."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from common.config import ConfigError, load_config
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.compose import ComposedMethod, method_of_config
from common.stylegan2.config import resolve
from common.stylegan2.evaluate import main as eval_main
from common.stylegan2.snapshot import load_networks
from common.stylegan2.training import replace_cfg, train
from eqgan.config import EqGANConfig, config_names, config_path
from eqgan.generate import main as generate_main
from eqgan.method import EqGANSA
from eqgan.spatial import SpatialSynthesisNetwork
from eqgan.train import main as train_main

SMALL = dict(
    G={"channel_base": 256, "channel_max": 16, "z_dim": 16, "w_dim": 16},
    D={"channel_base": 256, "channel_max": 16},
    optim={"d_reg_interval": 4},
    train={"batch": 8, "total_kimg": 0.048, "kimg_per_tick": 0.024, "snap_ticks": 1, "metrics": ["none"]},
)


def _cfg(*overrides: str) -> EqGANConfig:
    return replace_cfg(load_config(EqGANConfig, config_path("tiny"), list(overrides)), **SMALL)


def _weights(state) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n in ("G", "D", "G_ema") for k, v in state.modules[n].state_dict().items()}


def test_full_model_trains_logs_and_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _cfg()
    straight = train(cfg, tmp_path / "straight", method=EqGANSA())
    assert straight.batch_idx == 6 and isinstance(straight.G_ema.synthesis, SpatialSynthesisNetwork)
    records = [json.loads(line) for line in (tmp_path / "straight" / "stats.jsonl").open()]
    assert all(torch.isfinite(torch.tensor(r["Loss/G/align_loss"])) for r in records)
    assert all("Metrics/DI" in r for r in records)
    train(cfg, tmp_path / "split", method=EqGANSA(), max_iterations=3)
    resumed = train(cfg, tmp_path / "split2", method=EqGANSA(), resume=tmp_path / "split")
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    nets = load_networks(tmp_path / "straight")  # rebuilt by the recorded method, official key names
    assert "synthesis.b32.conv0.sel.output.1.weight" in nets.G_ema.state_dict()


def test_ablation_rows_are_flags_and_the_g_step_reaches_every_g_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    for sel, align in ((False, False), (True, False), (False, True)):  # the official align_loss=False crashed
        cfg = _cfg(f"eqgan.use_sel={str(sel).lower()}", f"eqgan.align_loss={str(align).lower()}")
        state = train(cfg, tmp_path / f"run-{sel}-{align}", method=EqGANSA(), max_iterations=2)
        hm_grads = [p.grad for n, p in state.G.named_parameters() if "hm_conv" in n]
        assert all(g is None for g in hm_grads) != sel  # encoders train only through SELs, as officially
    cfg = _cfg()
    state = train(cfg, tmp_path / "full", method=EqGANSA(), max_iterations=1)
    state.G.zero_grad(set_to_none=True)
    state.D.zero_grad(set_to_none=True)
    state.G.requires_grad_(True)  # as the Gmain phase: G trains, D stays frozen
    state.loss.accumulate_gradients("Gmain", None, None, torch.randn(8, 16), torch.zeros(8, 0), gain=1)
    assert all(p.grad is not None for p in state.G.parameters())  # hm encoders and SELs included
    assert all(p.grad is None for p in state.D.parameters())  # D frozen in the G phase, CAM pass included


def test_composes_with_dynamicd_not_with_insgen():
    method = method_of_config(config_path("tiny"), ["methods=[eqgan, dynamicd]"])
    assert isinstance(method, ComposedMethod) and method.owners["build_loss"].name == "eqgan"
    with pytest.raises(ConfigError, match="methods insgen and eqgan both"):
        method_of_config(config_path("tiny"), ["methods=[insgen, eqgan]"])


def test_di_of_a_snapshot_and_the_heatmap_edit(tmp_path, monkeypatch):
    from common.stylegan2.training import load_dataset

    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _cfg()
    train(cfg, tmp_path / "run", method=EqGANSA(), max_iterations=2)
    data = str(load_dataset(cfg).path)
    result = CliRunner().invoke(eval_main, ["--ckpt", str(tmp_path / "run"), "--data", data, "--metrics", "di",
                                            "--num-di", "16", "--out", str(tmp_path / "ev"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert record["di"] == pytest.approx(record["di_real"] - record["di_fake"])
    result = CliRunner().invoke(generate_main, ["--network", str(tmp_path / "run"), "--seeds", "0-2", "--centers",
                                                "0.5,-0.5", "--outdir", str(tmp_path / "gen")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gen" / "grid.png").is_file() and (tmp_path / "gen" / "seed0002_edited.png").is_file()
    bad = CliRunner().invoke(generate_main, ["--network", str(tmp_path / "run"), "--centers", "left",
                                             "--outdir", str(tmp_path / "g2")])
    assert bad.exit_code == 2 and "--centers takes 'y,x'" in bad.output


def test_every_row_loads_and_paper_rows_build_the_official_sizes():
    assert set(config_names()) == {f"{d}{row}" for d in ("lsun_cat", "ffhq", "lsun_church")
                                   for row in ("", "_sel", "_baseline")} | {"tiny"}
    for name in config_names():
        cfg = load_config(EqGANConfig, config_path(name))
        assert cfg.methods == ["eqgan"] and cfg.augment.mode == "noaug" and cfg.loss.pl_weight == 0
        assert cfg.loss.style_mixing_prob == 0
        flags = (cfg.eqgan.use_sel, cfg.eqgan.align_loss)
        assert flags == {"_sel": (True, False), "_baseline": (False, False)}.get(name[name.rfind("_"):], (True, True))
    cfg = resolve(load_config(EqGANConfig, config_path("lsun_cat")), 256, gpus=8)
    G = build_generator(cfg, 256, 3, 0, synthesis_class=SpatialSynthesisNetwork, use_sel=True)
    assert sum(p.numel() for p in G.parameters()) == 56_222_346
    assert sum(p.numel() for p in build_discriminator(cfg, 256, 3, 0).parameters()) == 24_001_089
    assert (cfg.train.batch, cfg.train.ema_kimg, cfg.loss.r1_gamma, cfg.D.mbstd_group_size) == (64, 20, 1, 8)


def test_bad_settings_are_one_line_before_any_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    for bad, message in (("eqgan.level_weights=[1,1]", "needs 3 values"),
                         ("eqgan.align_thres=2", "give 0 <= t < 1"),
                         ("methods=[dynamicd]", "trains EqGANSA alone")):
        result = CliRunner().invoke(train_main, ["--cfg", "tiny", "--set", bad, "--outdir", str(tmp_path / "r")])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="at 16 px D has no b32 output: use images of >= 32 px, or set eqgan.levels"):
        train(_cfg("data.resolution=16"), tmp_path / "r16", method=EqGANSA(), max_iterations=1)
    state = train(_cfg("data.resolution=16", "eqgan.levels=[b8, b16]"), tmp_path / "r16b", method=EqGANSA(),
                  max_iterations=1)  # the 16 px testbed row: the two levels D has
    assert state.loss.levels == ("b8", "b16") and "Loss/G/align_b32" not in state.loss.stats
