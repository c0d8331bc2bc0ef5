from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from common.logging import Progress, ScalarLogger, read_scalars
from common.report import Report, image_grid, markdown_table


def test_markdown_table_formats_and_checks_widths():
    text = markdown_table(["method", "FD"], [["baseline", 41.23456], ["InsGen", 3]])
    assert text.splitlines() == ["| method | FD |", "|---|---|", "| baseline | 41.23 |", "| InsGen | 3 |"]
    with pytest.raises(ValueError, match="2 headers"):
        markdown_table(["a", "b"], [[1]])


def test_image_grid_places_images_row_major():
    images = np.stack([np.full((3, 2, 2), i, dtype=np.uint8) for i in range(5)])
    grid = image_grid(images, columns=3)
    assert grid.shape == (4, 6, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 2, 0] == 1 and grid[0, 4, 0] == 2 and grid[2, 0, 0] == 3
    assert grid[2, 4, 0] == 0  # empty slot stays black
    spaced = image_grid(images, columns=3, spacing=1)
    assert spaced.shape == (5, 8, 3) and spaced[0, 2, 0] == 255 and spaced[0, 3, 0] == 1 and spaced[3, 0, 0] == 3


def test_report_writes_markdown_grid_and_curve(tmp_path):
    report = Report(tmp_path, "Tiny ablation")
    report.table(["arm", "gap"], [["baseline", 0.5]])
    report.image_grid("samples.png", np.zeros((4, 1, 8, 8), dtype=np.uint8), caption="samples", scale=2)
    report.curves("gap.png", {"baseline": ([0, 1, 2], [0.1, 0.3, 0.5])}, ylabel="gap")
    text = report.write().read_text()
    assert text.startswith("# Tiny ablation\n")
    assert "| baseline | 0.5 |" in text and "![samples](samples.png)" in text and "(gap.png)" in text
    assert Image.open(tmp_path / "samples.png").size == (32, 32)
    report.image_grid("spaced.png", np.zeros((4, 1, 8, 8), dtype=np.uint8), scale=2, spacing=3)
    assert Image.open(tmp_path / "spaced.png").size == (35, 35)  # 2 cells of 16 + 3 white pixels
    assert Image.open(tmp_path / "gap.png").format == "PNG"


def test_scalar_logger_appends_jsonl_and_progress_counts(tmp_path):
    logger = ScalarLogger(tmp_path, tensorboard=False)
    logger.log(1, loss=0.5)
    logger.log(2, loss=0.25, p=0.1)
    records = read_scalars(tmp_path / "stats.jsonl")
    assert [(r["step"], r["loss"]) for r in records] == [(1, 0.5), (2, 0.25)] and records[1]["p"] == 0.1
    assert json.loads((tmp_path / "stats.jsonl").read_text().splitlines()[0])["step"] == 1
    with Progress(total=64) as bar:
        bar.update(32, loss=0.1)
        assert bar.rate > 0


def test_seed_summaries_and_set_overrides():
    from common.config import set_overrides
    from common.report import mean_sd, per_seed

    assert mean_sd([1.0, 2.0, 3.0], "{:.1f}") == "2.0 ± 1.0" and mean_sd([0.5]) == "0.500 (1 seed)"
    assert per_seed([0.1, None, 0.25], "{:.2f}", " / ") == "0.10 / - / 0.25"
    assert set_overrides({"genda": {"method": "ewc", "ewc_lambda": 500.0}, "methods": ["insgen"]}) == [
        "genda.method=ewc", "genda.ewc_lambda=500.0", 'methods=["insgen"]']
