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


def test_supervised_aux_trains_both_networks_on_the_labels_only(tmp_path):
    torch.set_num_threads(1)
    result = train_cmpl(_cfg("ssl.method=supervised", "ssl.supervised_aux=true", "train.iterations=2"), tmp_path)
    assert set(result.nets) == {"primary", "aux"} and result.scalars["loss_u"] == 0.0
    assert "aux/top1" in result.scalars and "complementarity" not in result.scalars


def test_interval_means_skip_missing_values_and_reset():
    from cmpl.training import IntervalMeans

    means = IntervalMeans()
    means.add({"a": 1.0, "b": float("nan")})
    means.add({"a": 3.0, "b": 0.5})
    assert means.pop() == {"a": 2.0, "b": 0.5}
    assert means.pop() == {}


def test_channels_last_gives_the_same_loss_and_gradients():
    from cmpl.training import build_network, ssl_step

    torch.manual_seed(0)
    cfg = _cfg("ssl.method=cmpl")
    nets = {"primary": build_network(cfg.primary, 8), "aux": build_network(cfg.aux, 8)}
    for net in nets.values():  # float64: float32 sums in another order differ by ~1e-3 through small-batch BN
        net.head.dropout.p = 0.0
        net.double()
    x, u_weak, u_strong = (torch.randn(n, 3, 16, 32, 32, dtype=torch.float64) for n in (2, 4, 4))
    y, truth = torch.tensor([0, 1]), torch.tensor([0, 1, 2, 3])
    grads = []
    for memory_format in (torch.contiguous_format, torch.channels_last_3d):
        for net in nets.values():
            net.to(memory_format=memory_format).zero_grad()
        inputs = [t.contiguous(memory_format=memory_format) for t in (x, u_weak, u_strong)]
        loss, _ = ssl_step(cfg, nets, inputs[0], y, inputs[1], inputs[2], truth)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for net in nets.values() for p in net.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-12)
    for a, b in zip(grads[0][1], grads[1][1]):
        assert (a - b).norm() <= 1e-9 * a.norm() + 1e-15


def _mechanism(complementary: float, aux_right: float) -> dict[str, float]:
    return {"complementarity": complementary, "aux_right_where_primary_wrong": aux_right, "primary_confident": 0.5,
            "primary_label_accuracy": 0.5, "aux_confident": 0.5, "aux_label_accuracy": 0.5}


def test_gates_on_hand_made_runs():
    from cmpl import reproduce

    def run(arm, seed, aux_top1, mechanism):
        return {"arm": arm, "seed": seed, "final": {"primary/top1": 0.3, "aux/top1": aux_top1},
                "mechanism": mechanism}

    runs = {"supervised": [run("supervised", s, 0.2, _mechanism(0.10, float("nan"))) for s in range(3)],
            "CMPL": [run("CMPL", s, top1, _mechanism(0.2, 0.3)) for s, top1 in enumerate((0.3, 0.1, 0.25))],
            "CMPL, auxiliary = copy of F": [run("CMPL, auxiliary = copy of F", s, 0.3, _mechanism(0.25, 0.2))
                                            for s in range(3)],
            "FixMatch": []}
    rows = reproduce.gate_rows(runs)
    assert [row[2] for row in rows] == ["yes", "yes", "yes", "**no**"]
    assert "+0.017" in rows[2][1] and "2/3 seeds" in rows[2][1]
    runs["CMPL"][0]["final"]["aux/top1"] = 0.15  # now 1 of 3 seeds gains
    assert reproduce.gate_rows(runs)[2][2] == "**no**"


def test_tiny_report_smoke_and_report_only(tmp_path):
    from click.testing import CliRunner

    from cmpl import reproduce

    path = reproduce.run_tiny(tmp_path, [0], workers=1, smoke=True)
    text = path.read_text()
    assert "Smoke run" in text and reproduce.GATES in text and "| CMPL |" in text
    for png in ("label_accuracy.png", "top1.png", "clips.png"):
        assert (tmp_path / png).is_file()
    record = json.loads((tmp_path / "results.json").read_text())
    assert [r["arm"] for r in record["results"]] == list(reproduce.ARMS)
    assert {"mechanism"} <= set(record["results"][0]) and "fixmatch_label_accuracy" in record["results"][2]
    (tmp_path / "report.md").unlink()
    result = CliRunner().invoke(reproduce.main, ["--report-only", "--outdir", str(tmp_path)])
    assert result.exit_code == 0 and (tmp_path / "report.md").read_text() == text, result.output
