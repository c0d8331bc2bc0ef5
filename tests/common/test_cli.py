from __future__ import annotations

from dataclasses import dataclass

import click
import pytest
import yaml
from click.testing import CliRunner

from common.cli import common_options, next_run_dir, setup_run


@dataclass
class ToyConfig:
    seed: int = 0
    lr: float = 0.1


def test_run_dirs_are_numbered_and_never_reused(tmp_path):
    first = next_run_dir(tmp_path, "tiny")
    second = next_run_dir(tmp_path, "tiny")
    (tmp_path / "00007-other").mkdir()
    third = next_run_dir(tmp_path, "paper256")
    assert [first.name, second.name, third.name] == ["00000-tiny", "00001-tiny", "00008-paper256"]


def _command(seen: dict):
    @click.command()
    @common_options
    def train(**kwargs):
        setup = setup_run(ToyConfig, "toy", **kwargs)
        seen["setup"] = setup

    return train


def test_shared_options_load_config_and_write_resolved_config(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("lr: 0.5\n")
    seen: dict = {}
    result = CliRunner().invoke(
        _command(seen),
        ["--cfg", str(cfg), "--set", "lr=0.25", "--seed", "3", "--outdir", str(tmp_path / "runs"), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    setup = seen["setup"]
    assert setup.cfg == ToyConfig(seed=3, lr=0.25)
    assert setup.run_dir == tmp_path / "runs" / "00000-tiny"
    assert yaml.safe_load((setup.run_dir / "config.yaml").read_text()) == {"seed": 3, "lr": 0.25}
    assert f"run dir: {setup.run_dir}" in result.output

    resumed: dict = {}
    result = CliRunner().invoke(_command(resumed), ["--resume", str(setup.run_dir), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert resumed["setup"].run_dir == setup.run_dir and resumed["setup"].cfg == setup.cfg


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "lrr=1"], "unknown config key 'lrr'"),
        (["--set", "lr=fast"], "wrong type for config key 'lr'"),
    ],
)
def test_config_errors_are_one_line_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(_command({}), [*args, "--outdir", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_user_errors_become_one_line_click_errors(tmp_path):
    from common.checkpoint import load_checkpoint
    from common.cli import user_errors
    from common.data import ImageDataset

    @click.command()
    @click.option("--what")
    def run(what):
        with user_errors():
            if what == "data":
                ImageDataset(tmp_path / "nope.zip")
            load_checkpoint(tmp_path / "nope.pt")

    for what, message in (("data", "dataset path"), ("ckpt", "no checkpoint file")):
        result = CliRunner().invoke(run, ["--what", what])
        assert result.exit_code == 1 and f"Error: {message}" in result.output and "Traceback" not in result.output
