"""The limited-data testbed: the preset is the regime the sweep chose, its baseline over-fits (a mechanism test on
the regime, not a method-vs-baseline race), and the reproduction writes its report."""

from __future__ import annotations

import dataclasses
import json
import math

from click.testing import CliRunner

from common.config import load_config
from common.stylegan2.config import StyleGAN2Config, preset_path
from common.stylegan2.limited import ARMS, DEFAULT_ARMS, arm_slug, main
from common.stylegan2.limited_sweep import SWEEP_SEED, SweepRun, choose, evaluate, run_config
from common.stylegan2.training import replace_cfg, train

CHOSEN = SweepRun("shapes", 100, 2, 0.01, iterations=900)  # limited_sweep's choice (README table)


def test_preset_is_the_regime_the_sweep_chose():
    preset = load_config(StyleGAN2Config, preset_path("limited"))
    swept = run_config(CHOSEN)
    for section in ("data", "G", "D", "loss", "augment", "optim"):
        assert getattr(preset, section) == getattr(swept, section), section
    assert (preset.train.total_kimg, preset.train.batch, preset.probe.every) == (28.8, 32, 100)


def test_the_regime_baseline_over_fits_more_as_it_trains(tmp_path, monkeypatch):
    """Sweep seed, 400 iterations: D's train/held-out gap grows (sweep curve: 0.23, 0.37, 0.48, 0.61)."""
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = load_config(StyleGAN2Config, preset_path("limited"))
    cfg = replace_cfg(cfg, train={"total_kimg": 12.8, "kimg_per_tick": 12.8}, probe={"num_fakes": 100})
    cfg = dataclasses.replace(cfg, seed=SWEEP_SEED)
    train(cfg, tmp_path / "run")
    gaps = [json.loads(line)["gap"] for line in (tmp_path / "run" / "probe.jsonl").read_text().splitlines()]
    assert len(gaps) == 4 and gaps[-1] == max(gaps) and gaps[-1] > gaps[0] + 0.2, gaps


def test_smoke_reproduction_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "limited"
    result = CliRunner().invoke(main, ["--smoke", "--seeds", "0", "--workers", "1", "--outdir", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.md'}" in result.output
    text = (out / "report.md").read_text()
    for section in ("## D over-fitting gap (primary)", "## Sample quality and diversity", "## Samples", "## Cost"):
        assert section in text
    for arm in DEFAULT_ARMS:
        name = arm_slug(arm)
        assert (out / f"gap_{name}.png").stat().st_size > 0 and (out / f"samples_{name}.png").stat().st_size > 0
        assert f"| {arm} |" in text
    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted(r["spec"]["arm"] for r in results) == sorted(DEFAULT_ARMS) and set(DEFAULT_ARMS) <= set(ARMS)
    assert all(r["iterations"] == 4 and len(r["history"]) == 2 for r in results)  # probes at iterations 2 and 4
    bad = CliRunner().invoke(main, ["--arms", "InsGen,baseline"])
    assert bad.exit_code == 2 and "must start with baseline" in bad.output


def _result(images: int, d_width: int, gaps: list[float], entropy: float = 2.0, cpu: float = 100.0) -> dict:
    history = [{"iteration": 100 * (i + 1), "gap": g, "class_entropy": entropy, "max_class_entropy": math.log(10),
                "proxy_fd": 0.0} for i, g in enumerate(gaps)]
    run = dataclasses.asdict(SweepRun("digits", images, d_width, 0.05))
    return {"run": run, "label": str(run), "history": history, "cpu_seconds": cpu}


def test_selection_rule_checks_and_order():
    rising = [0.1 * i for i in range(1, 16)]  # 0.1 ... 1.5: passes from 1,000 iterations on
    e = evaluate(_result(64, 1, rising), 900)
    assert e["checks"] == {"gap": False, "growing": True, "entropy": True, "affordable": True}
    assert evaluate(_result(64, 1, rising), 1200)["passes"]
    assert not evaluate(_result(64, 1, rising[::-1]), 1500)["checks"]["growing"]
    assert not evaluate(_result(64, 1, rising, entropy=1.4), 1500)["checks"]["entropy"]  # 1.4 < 0.65 ln 10
    assert not evaluate(_result(64, 1, rising, cpu=200.0), 1500)["checks"]["affordable"]  # 200 s x 16.5 / 2 > 22 min
    candidates = [_result(32, 1, rising), _result(64, 2, rising), _result(64, 1, rising), _result(100, 1, [0.1] * 15)]
    run, chosen = choose(candidates)
    assert (run["run"]["images"], run["run"]["d_width"], chosen["budget"]) == (64, 1, 1200)
