"""Methods compose (common.stylegan2.compose): what may combine, what is refused with one line, and a combined run."""

from __future__ import annotations

import pytest
import torch
from toy_method import ToyMethod

from common.checkpoint import CheckpointError
from common.config import ConfigError, load_config
from common.stylegan2.compose import ComposedMethod, compose, method_names, method_of_config, methods_from_names
from common.stylegan2.config import StyleGAN2Config, preset_path
from common.stylegan2.method import LoopState, Method
from common.stylegan2.snapshot import load_networks, resolve_method
from common.stylegan2.training import replace_cfg, train
from insgen.config import InsGenConfig
from insgen.method import InsGen


class WidthSchedule(Method):
    """A D-side method in the manner of DynamicD: a weight hook installed in setup, a schedule, a logged scalar."""

    name = "width"

    def setup(self, state: LoopState) -> None:
        self.ratio = 1.0
        self.calls = 0
        state.D.b4.fc.weight_hook = lambda layer, w: w * layer.weight_gain * self.ratio

    def before_iteration(self, state: LoopState) -> None:
        self.ratio = 1.0 - 0.1 * state.batch_idx  # a schedule of the iteration, so a resumed run has it too

    def after_iteration(self, state: LoopState) -> None:
        self.calls += 1

    def scalars(self, state: LoopState) -> dict[str, float]:
        return {"Progress/ratio": self.ratio}

    def extra_state(self, state: LoopState) -> dict:
        return {"calls": self.calls}

    def load_extra_state(self, state: LoopState, extra: dict) -> None:
        self.calls = extra["calls"]


def test_two_owners_of_an_exclusive_hook_are_refused_in_one_line(monkeypatch):
    with pytest.raises(ConfigError) as info:
        ComposedMethod([InsGen(), ToyMethod()])  # both build the networks (InsGen: D_ema; the toy: its wrapper)
    message = str(info.value)
    assert "\n" not in message and "methods insgen and toy both build the networks (build_networks)" in message
    with pytest.raises(ConfigError, match="lists a method twice"):
        methods_from_names(["insgen", "insgen"])
    with pytest.raises(ConfigError, match="unknown method 'insgan' in 'methods'; choose from insgen, dynamicd, eqgan"):
        methods_from_names(["insgan"])
    import common.stylegan2.compose as compose_module

    monkeypatch.setitem(compose_module.METHODS, "ghost", "ghost.method:Ghost")
    with pytest.raises(ConfigError, match="method 'ghost' is not implemented yet"):
        methods_from_names(["ghost"])
    with pytest.raises(ConfigError, match="methods insgen and eqgan both build the networks"):
        methods_from_names(["insgen", "eqgan"])  # two loss-side methods
    with pytest.raises(ConfigError, match="must be a list of method names"):
        method_names(None, ["methods=insgen"])


def test_loss_side_and_d_side_methods_combine_with_one_schema():
    combined = compose([InsGen(), WidthSchedule()])
    assert isinstance(combined, ComposedMethod) and combined.owners["build_loss"] is combined.methods[0]
    assert combined.config_class is InsGenConfig  # the width method adds no config section
    assert compose([]).ref() == "common.stylegan2.method:Method" and compose([InsGen()]).ref() == "insgen.method:InsGen"
    assert combined.ref() == "insgen.method:InsGen+test_stylegan2_compose:WidthSchedule"
    assert type(method_of_config(preset_path("tiny"), ["methods=[insgen]"])) is InsGen


def test_a_combined_run_trains_logs_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = load_config(InsGenConfig, preset_path("tiny"), ["methods=[insgen]"])
    cfg = replace_cfg(
        cfg,
        data={"resolution": 8},
        G={"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16},
        D={"channel_base": 128, "channel_max": 16},
        augment={"mode": "ada"},
        train={"batch": 8, "total_kimg": 0.032, "kimg_per_tick": 0.016, "snap_ticks": 1, "metrics": ["none"]},
        insgen={"real_queue_size": 8, "fake_queue_size": 8},
    )

    def method():
        return ComposedMethod([InsGen(), WidthSchedule()])

    straight_method = method()
    straight = train(cfg, tmp_path / "straight", method=straight_method)
    assert straight_method.methods[1].calls == 4 and "D_ema" in straight.modules and "real_head" in straight.modules
    assert "Progress/ratio" in (tmp_path / "straight" / "stats.jsonl").read_text()
    train(cfg, tmp_path / "split", method=method(), max_iterations=2)
    resumed_method = method()
    resumed = train(cfg, tmp_path / "split2", method=resumed_method, resume=tmp_path / "split")
    assert resumed_method.methods[1].calls == 4  # its extra state came back under its own key
    for name in ("G", "D", "G_ema", "D_ema", "real_head"):
        for key, value in straight.modules[name].state_dict().items():
            assert torch.equal(value, resumed.modules[name].state_dict()[key]), (name, key)
    with pytest.raises(CheckpointError, match="not a method of this project's packages"):
        load_networks(tmp_path / "straight")  # the test's width method is not a project method ...
    nets = load_networks(tmp_path / "straight", method=method())  # ... given explicitly, it rebuilds
    assert set(nets.extra) == {"D_ema"}
    assert type(resolve_method("insgen.method:InsGen+common.stylegan2.method:Method")) is ComposedMethod


def test_common_cli_trains_a_paper_config_through_its_methods(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from common.stylegan2.train import main

    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    args = ["--cfg", "tiny", "--outdir", str(tmp_path / "runs"), "--set", "methods=[insgen]",
            "--set", "train.total_kimg=0.064", "--set", "train.metrics=[none]", "--set", "insgen.view_pipe=bgc"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    nets = load_networks(next((tmp_path / "runs").iterdir()))  # the recorded insgen method rebuilds D_ema
    assert "D_ema" in nets.extra
    bad_args = ["--cfg", "tiny", "--set", "methods=[insgen,eqgan]", "--outdir", str(tmp_path / "r")]
    bad = CliRunner().invoke(main, bad_args)
    assert bad.exit_code == 2 and "methods insgen and eqgan both" in bad.output
    assert not (tmp_path / "r").exists()
    plain = load_config(StyleGAN2Config, preset_path("tiny"))
    assert plain.methods == []
