"""DynamicD on the shared loop: the schedule every 4 iterations, exact resume (alone and with InsGen), snapshots
with plain StyleGAN2 keys, configs of every row, the CLIs' one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from common.config import ConfigError, load_config
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.compose import ComposedMethod, method_of_config
from common.stylegan2.config import resolve
from common.stylegan2.networks import Discriminator
from common.stylegan2.snapshot import load_networks
from common.stylegan2.training import replace_cfg, train
from dynamicd.config import DynamicDConfig, config_names, config_path
from dynamicd.method import DynamicD
from dynamicd.reproduce import main as reproduce_main
from dynamicd.train import main as train_main
from dynamicd.width import DynamicLayer

SMALL = dict(
    G={"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16},
    D={"channel_base": 128, "channel_max": 16},
    optim={"d_reg_interval": 4},
    train={"batch": 8, "total_kimg": 0.08, "kimg_per_tick": 0.04, "snap_ticks": 1, "metrics": ["none"]},
    probe={"every": 0},
)


def _cfg(name: str = "tiny", overrides: tuple[str, ...] = (), **sections) -> tuple:
    method = method_of_config(config_path(name), overrides)
    cfg = load_config(method.config_class, config_path(name), overrides)
    return replace_cfg(cfg, **{**SMALL, **sections}), method


def _weights(state, names=("G", "D", "G_ema")) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n in names for k, v in state.modules[n].state_dict().items()}


def test_schedule_every_four_iterations_and_exact_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg, method = _cfg()
    assert isinstance(method, DynamicD) and cfg.dynamicd.randomly_select and cfg.dynamicd.keepd == 3
    straight = train(cfg, tmp_path / "straight", method=method)
    assert straight.batch_idx == 10 and method.controller.ratio == pytest.approx(1 - 0.5 * 64 / 80)  # set at it 8
    ratios = [json.loads(line)["Progress/occupy_ratio"] for line in (tmp_path / "straight" / "stats.jsonl").open()]
    assert ratios == pytest.approx([1.0, 1.0 - 0.5 * 32 / 80, 0.6])  # ticks at iterations 1, 5, 10
    assert isinstance(straight.D.b8.conv0.weight_hook, DynamicLayer) and straight.D.b16.conv0.weight_hook is None

    first = DynamicD()
    train(cfg, tmp_path / "split", method=first, max_iterations=5)
    resumed_method = DynamicD()
    resumed = train(cfg, tmp_path / "split2", method=resumed_method, resume=tmp_path / "split")
    assert resumed_method.controller.ratio == method.controller.ratio
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)

    nets = load_networks(tmp_path / "straight")  # the full-width D, plain StyleGAN2 keys, no hooks
    plain = Discriminator(0, 16, 3, channel_base=128, channel_max=16)
    assert list(nets.D.state_dict()) == list(plain.state_dict())
    assert all(getattr(m, "weight_hook", None) is None for m in nets.D.modules())


def test_official_restart_on_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg, _ = _cfg("tiny_inc", ("dynamicd.restart_on_resume=true",))
    train(cfg, tmp_path / "a", method=DynamicD(), max_iterations=6)
    method = DynamicD()
    train(cfg, tmp_path / "b", method=method, resume=tmp_path / "a", max_iterations=3)
    assert method.controller.ratio == 0.5  # restarted at 6; no update 3 iterations later
    method = DynamicD()
    train(cfg, tmp_path / "c", method=method, resume=tmp_path / "a", max_iterations=4)
    assert method.controller.ratio == pytest.approx(0.5 + 0.5 * (4 * 8 / 1000) / 0.08)  # 4 iterations since 6


def test_with_insgen_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    path = "insgen/configs/tiny.yaml"
    sets = ["methods=[insgen, dynamicd]", "dynamicd.occupy_start=1.0", "dynamicd.occupy_end=0.5",
            "dynamicd.randomly_select=true", "dynamicd.keepd=3"]
    method = method_of_config(path, sets)
    assert isinstance(method, ComposedMethod) and method.ref() == "insgen.method:InsGen+dynamicd.method:DynamicD"
    cfg = replace_cfg(load_config(method.config_class, path, sets), **SMALL,
                      insgen={"real_queue_size": 8, "fake_queue_size": 8, "view_pipe": "bgc", "view_p": 0.3})
    straight = train(cfg, tmp_path / "straight", method=method)
    train(cfg, tmp_path / "split", method=method_of_config(path, sets), max_iterations=4)
    resumed = train(cfg, tmp_path / "split2", method=method_of_config(path, sets), resume=tmp_path / "split")
    a, b = _weights(straight, ("G", "D", "G_ema", "D_ema", "real_head")), _weights(resumed, (
        "G", "D", "G_ema", "D_ema", "real_head"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.modules["D_ema"].b8.conv0.weight_hook is None  # D_ema, G_ema and snapshots stay full width
    assert set(load_networks(tmp_path / "straight").extra) == {"D_ema"}


def test_every_row_loads_and_paper_rows_build_the_official_sizes():
    rows = config_names()
    assert {"ffhq140k_inc", "ffhq140k_const", "lsun_church_inc", "lsun_church_const", "lsun_bedroom_inc",
            "lsun_bedroom_const", "ffhq2k_dec", "ffhq2k_const", "ffhq100_dec", "ffhq100_const", "tiny",
            "tiny_inc"} == set(rows)
    for name in rows:
        cfg = load_config(DynamicDConfig, config_path(name))
        assert cfg.methods == ["dynamicd"]
        if name.endswith("_const"):
            assert not cfg.dynamicd.enabled
            twin = load_config(DynamicDConfig, config_path(name.replace("_const", "_dec" if "ffhq" in name and
                                                                        "140k" not in name else "_inc")))
            assert twin.dynamicd.enabled and (twin.data, twin.D, twin.train) == (cfg.data, cfg.D, cfg.train)
    dec = load_config(DynamicDConfig, config_path("ffhq2k_dec")).dynamicd
    assert (dec.occupy_start, dec.occupy_end, dec.randomly_select, dec.keepd) == (1.0, 0.5, True, 9)
    inc = load_config(DynamicDConfig, config_path("ffhq140k_inc")).dynamicd
    assert (inc.occupy_start, inc.occupy_end, inc.randomly_select, inc.keepd) == (0.5, 1.0, False, -1)
    cfg = resolve(load_config(DynamicDConfig, config_path("ffhq2k_dec")), 256, gpus=8)
    assert sum(p.numel() for p in build_generator(cfg, 256, 3, 0).parameters()) == 24_767_458
    assert sum(p.numel() for p in build_discriminator(cfg, 256, 3, 0).parameters()) == 24_001_089


def test_bad_ratios_and_a_skip_d_are_one_line_before_any_run_dir(tmp_path):
    with pytest.raises(ConfigError, match="must be in \\(0, 1\\]"):
        load_config(DynamicDConfig, config_path("tiny"), ["dynamicd.occupy_start=1.5"])
    for bad, message in (("dynamicd.occupy_end=2", "both must be in (0, 1]"),
                         ("D.architecture=skip", "set D.architecture to resnet"),
                         ("dynamicd.interval=0", "dynamicd.interval must be >= 1")):
        result = CliRunner().invoke(train_main, ["--cfg", "tiny", "--set", bad, "--outdir", str(tmp_path / "r")])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "r").exists()
    result = CliRunner().invoke(train_main, ["--cfg", "tiny", "--set", "methods=[insgen]"])
    assert result.exit_code == 2 and "trains DynamicD alone" in result.output


def test_reproduce_runs_both_regimes_and_paper_rows_need_the_full_dataset(tmp_path, monkeypatch):
    import common.stylegan2.limited as limited
    from common.stylegan2.limited import ARMS, ArmSpec, arm_config

    calls = []
    monkeypatch.setattr(limited, "run_testbed",
                        lambda out, arms, seeds, workers, smoke, title, groups: calls.append((arms, groups)) or out)
    result = CliRunner().invoke(reproduce_main, ["--smoke", "--outdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    arms, groups = calls[0]
    assert set(arms) <= set(ARMS) and [g[1][0] for g in groups] == ["baseline", "baseline, all data"]
    limited, _ = arm_config(ArmSpec("DynamicD", 0, ""))
    full, _ = arm_config(ArmSpec("DynamicD, all data", 0, ""))
    assert (limited.data.subset, full.data.subset) == (100, 1700) and limited.dynamicd == full.dynamicd
    result = CliRunner().invoke(reproduce_main, ["--preset", "ffhq2k_dec"])
    assert result.exit_code == 2 and "needs DATA=/path/to/the FULL dataset" in result.output
    result = CliRunner().invoke(reproduce_main, ["--preset", "tiny_inc"])
    assert result.exit_code == 2 and "choose one of" in result.output


def test_failed_or_foreign_starts_leave_run_dirs_as_they_were(tmp_path, monkeypatch):
    """A resume that does not fit, another method's snapshot, and a finished snapshot: one line each (or nothing to
    do), and no run dir left or changed."""
    from insgen.train import main as insgen_main

    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    small = ["--set", "train.total_kimg=0.064", "--set", "train.metrics=[none]", "--set", "probe.every=0"]
    assert runner.invoke(train_main, ["--cfg", "tiny", *small, "--outdir", str(tmp_path / "dd")]).exit_code == 0
    assert runner.invoke(insgen_main, ["--cfg", "tiny", *small, "--set", "insgen.view_pipe=bgc",
                                       "--outdir", str(tmp_path / "ig")]).exit_code == 0
    run = next((tmp_path / "dd").iterdir())
    config = (run / "config.yaml").read_text()
    bad = runner.invoke(train_main, ["--resume", str(run), "--set", "D.channel_max=32"])
    assert bad.exit_code != 0 and "does not fit module 'D'" in bad.output and "Traceback" not in bad.output
    assert (run / "config.yaml").read_text() == config  # the failed start did not rewrite the record
    foreign = sorted(next((tmp_path / "ig").iterdir()).glob("snapshot-*.pt"))[-1]
    args = ["--cfg", "tiny", *small, "--outdir", str(tmp_path / "dd"), "--resume"]
    bad = runner.invoke(train_main, [*args, str(foreign)])
    assert bad.exit_code != 0 and "was trained by insgen.method:InsGen, this run is dynamicd.method:DynamicD" in (
        bad.output)
    assert [p.name for p in (tmp_path / "dd").iterdir()] == [run.name]  # the run dir it made is gone
    own = sorted(run.glob("snapshot-*.pt"))[-1]
    done = runner.invoke(train_main, [*args, str(own)])
    assert done.exit_code == 0 and "nothing to train" in done.output
    assert [p.name for p in (tmp_path / "dd").iterdir()] == [run.name]
