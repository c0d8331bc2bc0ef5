"""make reproduce PAPER=insgen: the tiny preset is InsGen's rows of the limited-data testbed; paper rows need data."""

from __future__ import annotations

from click.testing import CliRunner

import common.stylegan2.limited as limited
from common.stylegan2.limited import ARMS, ArmSpec, arm_config
from insgen.method import InsGen
from insgen.reproduce import main


def test_tiny_runs_insgen_rows_of_the_testbed(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(limited, "run_testbed",
                        lambda out, arms, seeds, workers, smoke, title, groups:
                        calls.append((arms, seeds, smoke)) or out)
    result = CliRunner().invoke(main, ["--smoke", "--outdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert calls == [(["baseline", "ADA", "InsGen", "ADA + InsGen"], [0, 1, 2], True)]
    assert set(calls[0][0]) <= set(ARMS)
    cfg, method = arm_config(ArmSpec("InsGen", 0, ""))  # InsGen's testbed arm is this package's tiny preset
    assert isinstance(method, InsGen) and cfg.insgen.view_pipe == "bgc" and cfg.augment.mode == "noaug"
    cfg, method = arm_config(ArmSpec("ADA + InsGen", 0, ""))
    assert isinstance(method, InsGen) and cfg.insgen.view_pipe is None and cfg.augment.mode == "ada"


def test_paper_rows_need_the_full_dataset():
    result = CliRunner().invoke(main, ["--preset", "ffhq2k"])
    assert result.exit_code == 2 and "needs DATA=/path/to/the FULL dataset" in result.output
    result = CliRunner().invoke(main, ["--preset", "ffhq3k"])
    assert result.exit_code == 2 and "choose one of" in result.output
    result = CliRunner().invoke(main, ["--seeds", "0,x"])
    assert result.exit_code == 2 and "give comma-separated integers" in result.output
