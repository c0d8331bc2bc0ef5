from __future__ import annotations

from dataclasses import dataclass

import click
import pytest
import yaml
from click.testing import CliRunner

from common.cli import common_options, next_run_dir, output_run, setup_run, user_errors
from common.config import ConfigError


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
        (["--device", "bogus"], "--device 'bogus' is not a device"),
    ],
)
def test_config_errors_are_one_line_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(_command({}), ["--device", "cpu", *args, "--outdir", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # no run dir


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


def _output_command(seen: dict, fail: bool):
    @click.command()
    @common_options
    def sample(**kwargs):
        setup = setup_run(ToyConfig, "toy", **kwargs)
        seen["setup"] = setup
        with output_run(setup), user_errors():
            if fail:
                raise ConfigError("sample: no such prior")
            (setup.run_dir / "samples.npz").write_bytes(b"ok")

    return sample


def test_output_cli_keeps_the_run_record_and_leaves_no_trace_when_it_fails(tmp_path):
    runs = tmp_path / "runs"
    train = runs / "00000-train"
    train.mkdir(parents=True)
    (train / "config.yaml").write_text("seed: 0\nlr: 0.5\n")
    record = (train / "config.yaml").read_bytes()
    for fail in (True, False):  # --resume RUN --set lr=0.1: the training run's record is never rewritten
        result = CliRunner().invoke(_output_command({}, fail), ["--resume", str(train), "--set", "lr=0.1",
                                                                 "--device", "cpu"])
        assert (result.exit_code != 0) == fail, result.output
        assert (train / "config.yaml").read_bytes() == record
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--resume", str(empty), "--cfg", str(train / "config.yaml"), "--device", "cpu"]
    result = CliRunner().invoke(_output_command({}, False), args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in empty.iterdir()) == ["samples.npz"]  # no config.yaml left in a foreign dir
    result = CliRunner().invoke(_output_command({}, True), ["--outdir", str(tmp_path / "new"), "--device", "cpu"])
    assert result.exit_code == 1 and "no such prior" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()  # the run dir it created is gone, and the --outdir it created for it
    (tmp_path / "kept").mkdir()
    result = CliRunner().invoke(_output_command({}, True), ["--outdir", str(tmp_path / "kept"), "--device", "cpu"])
    assert result.exit_code == 1 and (tmp_path / "kept").is_dir()  # a folder that was there stays


def test_a_corrupt_image_read_in_a_dataloader_worker_is_one_line(tmp_path):
    """torch re-raises a worker's DatasetError with the worker's traceback in its message; users see one line."""
    import numpy as np
    import torch

    from common.data import ImageDataset, write_image_archive

    folder = write_image_archive(tmp_path / "d", np.zeros((4, 8, 8, 3), dtype=np.uint8))
    (folder / "00000/img00000002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # decoded only when read

    @click.command()
    def run():
        with user_errors():
            loader = torch.utils.data.DataLoader(ImageDataset(folder), batch_size=4, num_workers=1)
            next(iter(loader))

    result = CliRunner().invoke(run, [])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("Error: cannot decode image '00000/img00000002.png'")
