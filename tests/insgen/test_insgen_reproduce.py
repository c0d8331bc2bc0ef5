"""The reproduce script's smoke mode writes a report with every section (a few iterations per arm)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from insgen.reproduce import main


def test_smoke_report_has_every_section(tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["--smoke", "--outdir", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    for section in ("## D over-fitting gap (primary)", "## Sample quality and diversity", "## Samples", "## Cost"):
        assert section in text
    for figure in ("gap_noaug.png", "gap_ada.png", "proxy_fd_noaug.png", "proxy_fd_ada.png",
                   "samples_noaug_baseline.png", "samples_noaug_insgen.png", "samples_ada_baseline.png",
                   "samples_ada_insgen.png"):
        assert (out / figure).stat().st_size > 0 and f"({figure})" in text
    results = json.loads((out / "results.json").read_text())
    arms = {(r["spec"]["setting"], r["spec"]["insgen"], r["spec"]["seed"]) for r in results}
    assert arms == {(s, i, seed) for s in ("noaug", "ada") for i in (False, True) for seed in (0, 1)}
    assert all(r["iterations"] == 4 and len(r["history"]) == 2 for r in results)  # probes at iterations 2 and 4
    assert "| noaug | 0 |" in text and "| ada | mean ± sd |" in text


def test_paper_rows_need_the_full_dataset():
    result = CliRunner().invoke(main, ["--preset", "ffhq2k"])
    assert result.exit_code == 2 and "needs DATA=/path/to/the FULL dataset" in result.output
    result = CliRunner().invoke(main, ["--preset", "ffhq3k"])
    assert result.exit_code == 2 and "choose one of" in result.output
