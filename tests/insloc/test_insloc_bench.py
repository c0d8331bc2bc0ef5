"""``insloc.bench``: both measurements run and print their figures (tiny setting, a few images)."""

from __future__ import annotations

from click.testing import CliRunner

from insloc.bench import main


def test_pretrain_bench_compares_insloc_with_moco():
    result = CliRunner().invoke(main, ["--what", "pretrain", "--setting", "tiny", "--batch", "2", "--reps", "1"])
    assert result.exit_code == 0 and "InsLoc / MoCo" in result.output, result.output


def test_data_bench_reads_written_jpegs_with_workers():
    result = CliRunner().invoke(main, ["--what", "data", "--setting", "tiny", "--images", "6", "--side", "48",
                                       "--batch", "2", "--workers", "1"])
    assert result.exit_code == 0 and "pairs/s with 1 workers" in result.output, result.output


def test_a_wrong_data_path_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["--what", "data", "--path", str(tmp_path / "none")])
    assert result.exit_code != 0 and "Traceback" not in result.output
