"""make reproduce PAPER=eqgan: the smoke pipeline writes the report; the regime rule; paper rows need data."""

from __future__ import annotations

import json

from click.testing import CliRunner

from eqgan.reproduce import ARMS, main, rule_checks


def test_smoke_reproduction_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "tiny"
    result = CliRunner().invoke(main, ["--smoke", "--seeds", "0", "--workers", "1", "--outdir", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    for section in ("## Disequilibrium indicator DI (primary)", "## Mechanism", "## Sample quality", "## Samples"):
        assert section in text
    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted(r["spec"]["arm"] for r in results) == sorted(ARMS)
    for r in results:
        assert r["di"]["di"] == r["di"]["di_real"] - r["di"]["di_fake"] and 0 <= r["cam"]["iou"] <= 1
    assert (out / "samples_sel_l_align.png").stat().st_size > 0


def _run(curve: list[float], entropy: float = 1.2, cpu: float = 0.1) -> dict:
    return {"curve": [(1 + 100 * i, d) for i, d in enumerate(curve)], "class_entropy": entropy,
            "cpu_per_iteration": {arm: cpu for arm in ARMS}}


def test_regime_rule_checks():
    growing = [0.1, 0.4, 0.8, 1.2, 1.6, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0]  # ticks at iterations 1, 101, ..., 1001
    assert rule_checks(_run(growing), 600) == []
    assert rule_checks(_run([0.1] * 11), 600) == ["DI", "growing"]
    assert rule_checks(_run(growing, entropy=0.5), 600) == ["entropy"]
    assert rule_checks(_run(growing, cpu=1.0), 1000)[-1].startswith("affordable")


def test_paper_rows_need_the_dataset():
    result = CliRunner().invoke(main, ["--preset", "lsun_cat"])
    assert result.exit_code == 2 and "needs DATA=" in result.output
    result = CliRunner().invoke(main, ["--preset", "cat"])
    assert result.exit_code == 2 and "choose one of" in result.output
