"""eval.py and reproduce.py: the reprojection error of a generator's own views, the tiny metrics' keys, the gate
formulas, the report cell with a missing seed, and one-line refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

import volumegan.eval
from volumegan.eval import main as eval_main
from volumegan.eval import reprojection, tiny_metrics
from volumegan.method import lod_at
from volumegan.metrics3d import DepthNetConfig, OracleConfig, load_depth_net, load_oracle, pose_error
from volumegan.official import load_volumegan
from volumegan.reproduce import BUDGET_KIMG, DIAGNOSTIC_ARMS, _cell, arm_config, gate_rows
from volumegan.reproduce import main as reproduce_main
from volumegan.synthetic import load_scenes, scenes_dataset

CHECKPOINT = Path(__file__).with_name("fixtures") / "official_checkpoint_small.pth"


def test_reprojection_of_a_generator_and_the_eval_cli(tmp_path):
    G = load_volumegan(CHECKPOINT).G_ema
    out = reprojection(G, count=4)
    assert 0 <= out["re"] < 1 and 0 <= out["re_valid"] <= 1
    result = CliRunner().invoke(eval_main, ["--ckpt", str(CHECKPOINT), "--metrics", "re", "--out", str(tmp_path)])
    assert result.exit_code == 0 and result.output.startswith("re = "), result.output
    assert json.loads((tmp_path / "metrics.json").read_text())["re"] == pytest.approx(reprojection(G)["re"])
    for args, message in ((["--metrics", "fid50k_full"], "need --data"), (["--metrics", "psnr"], "unknown metric"),
                          (["--metrics", "re", "--device", "gpu0"], "is not a device")):
        result = CliRunner().invoke(eval_main, ["--ckpt", str(CHECKPOINT), *args])
        assert result.exit_code != 0 and message in result.output and isinstance(result.exception, SystemExit)


def test_tiny_metrics_add_depth_and_pose_errors(tmp_path, monkeypatch):
    """With a 48-scene dataset and nets trained for 3 steps (the defaults' calibration: volumegan/metrics3d.py)."""
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path))
    oracle, _ = load_oracle(OracleConfig(num_images=48, held_out=16, steps=3, batch_size=8))
    depth_net, _ = load_depth_net(DepthNetConfig(num_images=48, held_out=16, steps=3, batch_size=8))
    monkeypatch.setattr(volumegan.eval, "load_oracle", lambda: (oracle, {}))
    monkeypatch.setattr(volumegan.eval, "load_depth_net", lambda: (depth_net, {}))
    monkeypatch.setattr(volumegan.eval, "scenes_dataset", lambda: scenes_dataset(48))
    out = tiny_metrics(load_volumegan(CHECKPOINT).G_ema, count=8, pairs=4)
    assert list(out)[-5:] == ["pe", "pe_real", "de", "de_valid", "de_real"]  # after the earlier keys, unchanged
    assert {"yaw_r", "fd", "fd_real", "swap_opacity_change", "re", "re_valid"} <= set(out)
    assert out["pe"] >= 0 and 0 <= out["de_valid"] <= 1 and all(math.isfinite(out[k]) for k in ("de", "de_real"))
    data = load_scenes(scenes_dataset(48))  # the real floor: the held-out slice (here all 48 scenes)
    assert out["pe_real"] == pytest.approx(pose_error(oracle, data.images, data.factors["yaw"]))


def _run(arm: str, yaw: float, change: float, shape: float) -> dict:
    return {"arm": arm, "final": {"yaw_r": yaw, "swap_opacity_change": change, "swap_shape_follows_structure": shape}}


def test_gates_need_every_seed_and_a_missing_value_fails():
    passing = [_run("VolumeGAN", r, 0.0, 0.8) for r in (0.5, -0.4, 0.31)]
    assert [row[-1] for row in gate_rows(passing)] == ["**yes**", "**yes**"]
    one_low = passing[:2] + [_run("VolumeGAN", 0.29, 0.0, math.nan)]
    assert [row[-1] for row in gate_rows(one_low)] == ["no", "no"]
    moved = passing[:2] + [_run("VolumeGAN", 0.5, 1e-6, 0.9)]
    assert gate_rows(moved)[1][-1] == "no"
    assert gate_rows(passing + [_run("no volume (ablation)", 0.0, 1.0, 0.0)])[0][1] == "0.50, 0.40, 0.31"
    assert _cell([0.5, math.nan, 0.7], "{:.1f}") == "0.6 ± 0.1 (0.5, nan, 0.7)"


def test_reproduce_refusals(tmp_path):
    runner = CliRunner()
    result = runner.invoke(reproduce_main, ["--report-only", "--outdir", str(tmp_path)])
    assert result.exit_code != 0 and "no results.json there" in result.output
    result = runner.invoke(reproduce_main, ["--preset", "ffhq1024"])
    assert result.exit_code != 0 and "unknown PRESET" in result.output
    result = runner.invoke(reproduce_main, ["--preset", "ffhq256", "--outdir", str(tmp_path / "row")])
    assert result.exit_code != 0 and "needs DATA=" in result.output and not (tmp_path / "row").exists()
    for args in (["--sweep", "--diagnose"], ["--diagnose", "--report-only"], ["--preset", "ffhq256", "--diagnose"]):
        result = runner.invoke(reproduce_main, [*args, "--outdir", str(tmp_path / "x")])
        assert result.exit_code != 0 and "give at most one of them" in result.output and not (tmp_path / "x").exists()


def test_fid_sees_the_generator_with_the_official_evaluation_cameras():
    import torch

    from common.metrics.base import FeatureExtractor
    from common.metrics.compute import generator_features
    from volumegan.eval import EvalView

    class MeanColour(FeatureExtractor):
        name, feature_dim, sha256, metric_label, device = "mean", 3, "0" * 64, "test", torch.device("cpu")

        def extract(self, images):
            return images.float().mean(dim=(2, 3))

    G = load_volumegan(CHECKPOINT).G_ema
    view = EvalView(G, noise_mode="const")
    torch.manual_seed(0)  # cameras and importance samples come from torch's RNG, z from the metric's seed
    a = generator_features(view, MeanColour(), 6, capture_all=True, batch_size=4, batch_gen=2, seed=3)
    torch.manual_seed(0)
    b = generator_features(view, MeanColour(), 6, capture_all=True, batch_size=4, batch_gen=2, seed=3)
    assert a.features().shape == (6, 3) and (a.features() == b.features()).all()
    assert G.synthesis.rays.perturb == "jitter"  # the evaluation's perturb='none' held for its calls only
    torch.manual_seed(0)
    z = torch.randn(2, 16)
    torch.manual_seed(1)
    direct = G(z, None, noise_mode="const", perturb="none")
    torch.manual_seed(1)
    assert torch.equal(view(z, None), direct)


def test_the_no_fade_diagnostic_arm_stays_at_the_raw_nerf_image():
    """--diagnose's second arm: the preset with the fade moved past its budget, i.e. lod = max for every image of
    it (the preset itself fades from 2 to 4 kimg)."""
    (overrides,) = DIAGNOSTIC_ARMS.values()
    for sets, lods in ((overrides, [1.0, 1.0, 1.0]), ([], [1.0, 0.5, 0.0])):
        vg = arm_config(sets, 0, BUDGET_KIMG, "unused.zip").volumegan
        training, transition = vg.lod_training_kimg * 1000, vg.lod_transition_kimg * 1000
        assert [lod_at(n, 1, training, transition) for n in (0, 3000, BUDGET_KIMG * 1000)] == lods
