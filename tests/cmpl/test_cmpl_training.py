"""CMPL's loop on the tiny synthetic clips: the methods' networks and terms, the saved split, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from cmpl.config import CMPLConfig, config_path
from cmpl.training import learning_rate, train_cmpl
from common.checkpoint import load_checkpoint, resolve_resume
from common.config import ConfigError, load_config

SMALL = ["data.synthetic_train=96", "data.synthetic_test=16", "data.label_fraction=0.1", "train.batch=4",
         "ssl.mu=2", "train.eval_every=1000", "train.log_every=1"]


def _cfg(*extra: str) -> CMPLConfig:
    return load_config(CMPLConfig, config_path("tiny"), [*SMALL, *extra])


@pytest.mark.parametrize("method, nets, logged", [
    ("cmpl", {"primary", "aux"}, {"primary_to_aux/mask_rate", "aux_to_primary/mask_rate", "complementarity"}),
    ("cmpl_aux_to_primary", {"primary", "aux"}, {"aux_to_primary/mask_rate"}),
    ("fixmatch", {"primary"}, {"primary_to_primary/mask_rate"}),
    ("supervised", {"primary"}, set()),
])
def test_methods_train_their_networks_and_log_their_directions(tmp_path, method, nets, logged):
    torch.set_num_threads(1)
    result = train_cmpl(_cfg(f"ssl.method={method}", "train.iterations=2"), tmp_path)
    assert set(result.nets) == nets and result.step == 2
    assert logged <= set(result.scalars) and {"loss_s", "loss_u", "primary/top1"} <= set(result.scalars)
    if method == "supervised":
        assert result.scalars["loss_u"] == 0.0
    split = json.loads((tmp_path / "split.json").read_text())
    assert split["fraction"] == 0.1 and len(split["labelled"]) >= 8  # >= 1 per class


def test_resume_equals_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg("train.iterations=4", "train.snapshot_every=2")
    train_cmpl(cfg, tmp_path / "full")
    train_cmpl(cfg, tmp_path / "cut", max_iterations=2)
    train_cmpl(cfg, tmp_path / "cut", resume=tmp_path / "cut")
    a, b = (load_checkpoint(resolve_resume(tmp_path / name)) for name in ("full", "cut"))
    assert a["step"] == b["step"] == 4
    for net in ("primary", "aux"):
        for key, value in a["modules"][net].items():
            assert torch.equal(value, b["modules"][net][key]), (net, key)


def test_schedule_and_frame_rates():
    cfg = _cfg("optim.warmup_iterations=10", "train.iterations=110")
    assert learning_rate(cfg, 0) == pytest.approx(0.005) and learning_rate(cfg, 9) == pytest.approx(0.05)
    assert learning_rate(cfg, 60) == pytest.approx(0.025) and learning_rate(cfg, 110) == pytest.approx(0.0)
    assert cfg.primary_step() == 4
    with pytest.raises(ConfigError, match="must span the same frames"):
        _cfg("primary.clip_len=8").primary_step()


def test_video_lists_end_to_end_with_multi_view_eval(tmp_path):
    import cv2
    import numpy as np
    from click.testing import CliRunner

    from cmpl import eval as cmpl_eval
    from cmpl import train as cmpl_train

    lines = []
    for i in range(8):
        writer = cv2.VideoWriter(str(tmp_path / f"v{i}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (48, 32))
        for f in range(20):
            writer.write(np.full((32, 48, 3), (i % 2) * 120 + 5 * f, dtype=np.uint8))
        writer.release()
        lines.append(f"v{i}.avi {i % 2}\n")
    (tmp_path / "list.txt").write_text("".join(lines))
    args = ["--cfg", "tiny", "--outdir", str(tmp_path / "runs"), "--set", "data.source=lists",
            "--set", f"data.root={tmp_path}", "--set", f"data.train_list={tmp_path / 'list.txt'}",
            "--set", f"data.val_list={tmp_path / 'list.txt'}", "--set", "data.num_classes=2",
            "--set", "data.label_fraction=0.5", "--set", "train.batch=2", "--set", "ssl.mu=1",
            "--set", "train.iterations=1"]
    result = CliRunner().invoke(cmpl_train.main, args)
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").iterdir())
    result = CliRunner().invoke(cmpl_eval.main, ["--ckpt", str(run), "--views", "2x3"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["views"] == "2x3" and out["videos"] == 8 and 0 <= out["primary/top1"] <= 1


def test_three_crop_takes_both_ends_and_the_middle_of_the_longer_side():
    import numpy as np

    from cmpl.eval import crops

    frames = np.arange(1 * 4 * 10 * 1).reshape(1, 4, 10, 1).repeat(3, axis=3)
    left, middle, right = crops(frames, 4, 3)
    assert left[0, 0, 0, 0] == 0 and middle[0, 0, 0, 0] == 3 and right[0, 0, 0, 0] == 6
    assert crops(frames, 4, 1)[0][0, 0, 0, 0] == 3


def test_bench_runs_both_measurements():
    from click.testing import CliRunner

    from cmpl.bench import main

    result = CliRunner().invoke(main, ["--setting", "tiny", "--batch", "2", "--reps", "1"])
    assert result.exit_code == 0 and "CMPL" in result.output, result.output
    result = CliRunner().invoke(main, ["--what", "decode", "--setting", "tiny", "--videos", "2", "--size", "32",
                                       "--frames", "20", "--workers", "1", "--batch", "1"])
    assert result.exit_code == 0 and "clips/s with 1 workers" in result.output, result.output


def test_sweep_smoke_applies_the_rule(tmp_path):
    from cmpl import reproduce

    path = reproduce.run_sweep(tmp_path, workers=1, smoke=True)
    text = path.read_text()
    assert "Chosen regime" in text and reproduce.SELECTION_RULE in text
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["chosen"] in reproduce.REGIMES and len(record["results"]) == 2 * len(reproduce.REGIMES)
