"""``python -m procA.reproduce --smoke``: the report has every section, every arm, per-seed numbers and figures."""

from click.testing import CliRunner

from procA.reproduce import ARMS, main


def test_smoke_report_has_every_section(tmp_path):
    result = CliRunner().invoke(main, ["--smoke", "--seeds", "0,1", "--workers", "1", "--outdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report.md").read_text()
    for section in ("## Setup", "## Target mIoU per arm", "## Per seed", "## Per-class IoU", "## Curves",
                    "## Prediction overlays", "## What the numbers show", "SMOKE RUN"):
        assert section in text
    for arm in ARMS:
        assert f"| {arm} |" in text
    assert "std over seeds" in text and "| 0 |" in text and "| 1 |" in text
    assert "| sky | building | road | sidewalk | vegetation | car |" in text.replace("| arm ", "")
    for figure in ("overlays.png", "curves_val_miou.png", "curves_contrast.png"):
        assert (tmp_path / figure).stat().st_size > 1000


def test_bad_seeds_are_one_usage_line(tmp_path):
    result = CliRunner().invoke(main, ["--seeds", "a", "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "give comma-separated integers" in result.output
    assert not (tmp_path / "out").exists()
