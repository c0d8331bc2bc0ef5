"""``common.stylegan2.rows.finished_record``: ``--report-only`` refuses a missing, unreadable or foreign record in
one line, and ``insloc.reproduce`` shows that line without touching the folder."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from common.stylegan2.rows import finished_record
from insloc import reproduce


def test_finished_record_checks_the_keys_its_report_reads(tmp_path):
    with pytest.raises(click.UsageError, match="no results.json"):
        finished_record(tmp_path, ("results",))
    (tmp_path / "results.json").write_text('{"results": [1')  # cut short
    with pytest.raises(click.UsageError, match="not a readable record"):
        finished_record(tmp_path, ("results",))
    (tmp_path / "results.json").write_text(json.dumps({"kimg": 1, "seeds": [0], "runs": []}))  # volumegan's keys
    with pytest.raises(click.UsageError, match="no 'pretrained', 'transferred'"):
        finished_record(tmp_path, ("seeds", "pretrained", "transferred"))
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(click.UsageError, match="no 'results'"):
        finished_record(tmp_path, ("results",))
    (tmp_path / "results.json").write_text(json.dumps({"results": [], "extra": 1}))
    assert finished_record(tmp_path, ("results",)) == {"results": [], "extra": 1}


def test_insloc_report_only_refuses_another_packages_record(tmp_path):
    record = {"wall_seconds": 1.0, "workers": 2, "results": []}  # the eqgan / limited-data layout
    (tmp_path / "results.json").write_text(json.dumps(record))
    (tmp_path / "report.md").write_text("theirs\n")
    result = CliRunner().invoke(reproduce.main, ["--report-only", "--outdir", str(tmp_path)])
    assert result.exit_code == 2 and "is not this package's record (no 'regime'" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.json"]
    assert (tmp_path / "report.md").read_text() == "theirs\n"
