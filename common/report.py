"""``report.md`` writer for reproductions: markdown tables, PNG image grids (PIL) and curves (matplotlib Agg).

report = Report("results/insgen/tiny", title="InsGen tiny ablation")
report.table(["method", "proxy-FD"], [["baseline", 41.2], ["InsGen", 33.0]])
report.image_grid("samples_insgen.png", images_nchw_uint8, caption="InsGen samples")
report.curves("gap.png", {"baseline": (steps, gaps), "InsGen": (steps, gaps2)}, ylabel="D gap")
report.write()
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], float_format: str = "{:.4g}") -> str:
    """A GitHub-markdown table; floats formatted with ``float_format``."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return float_format.format(value)
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(headers)} headers")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def mean_sd(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """'mean ± sd' over seeds (sample standard deviation); one value is marked '(1 seed)'."""
    if len(values) < 2:
        return fmt.format(values[0]) + " (1 seed)"
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def per_seed(values: Sequence[float | None], fmt: str = "{:.2f}", sep: str = ", ") -> str:
    """Every seed's value, '-' where a run has none."""
    return sep.join(fmt.format(v) if v is not None else "-" for v in values)


def image_grid(images: np.ndarray, columns: int | None = None, spacing: int = 0) -> np.ndarray:
    """Tile (N, C, H, W) uint8 images (C = 1 or 3) into one uint8 image, row-major, ``spacing`` white pixels
    between cells: (rows*(H+s)-s, columns*(W+s)-s, C)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 NCHW images, got {images.dtype} with shape {images.shape}")
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    step_h, step_w = h + spacing, w + spacing
    grid = np.full((rows * step_h - spacing, columns * step_w - spacing, c), 255 if spacing else 0, dtype=np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, columns)
        grid[r * step_h : r * step_h + h, k * step_w : k * step_w + w] = image.transpose(1, 2, 0)
    return grid


def save_image_grid(
    path: str | os.PathLike, images: np.ndarray, columns: int | None = None, scale: int = 1, spacing: int = 0
) -> Path:
    """Write :func:`image_grid` as PNG, each cell enlarged ``scale`` times (nearest) for small images, cells
    ``spacing`` (enlarged) pixels apart."""
    if scale > 1:
        images = np.asarray(images).repeat(scale, axis=2).repeat(scale, axis=3)
    grid = image_grid(images, columns, spacing)
    picture = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def save_curves(
    path: str | os.PathLike,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Plot named (x, y) series on one axis and save a PNG (matplotlib's Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


class Report:
    """Collects markdown sections and their figures in ``outdir``; :meth:`write` produces ``outdir/report.md``."""

    def __init__(self, outdir: str | os.PathLike, title: str) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self._parts: list[str] = [f"# {title}"]

    def heading(self, text: str, level: int = 2) -> None:
        self._parts.append("#" * level + " " + text)

    def text(self, text: str) -> None:
        self._parts.append(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]], float_format: str = "{:.4g}") -> None:
        self._parts.append(markdown_table(headers, rows, float_format))

    def image_grid(
        self,
        filename: str,
        images: np.ndarray,
        caption: str = "",
        columns: int | None = None,
        scale: int = 1,
        spacing: int = 0,
    ) -> Path:
        path = save_image_grid(self.outdir / filename, images, columns, scale, spacing)
        self._parts.append(f"![{caption or filename}]({filename})" + (f"\n\n*{caption}*" if caption else ""))
        return path

    def curves(
        self,
        filename: str,
        series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
        title: str = "",
        xlabel: str = "step",
        ylabel: str = "",
        ylim: tuple[float, float] | None = None,
    ) -> Path:
        path = save_curves(self.outdir / filename, series, title, xlabel, ylabel, ylim)
        self._parts.append(f"![{title or filename}]({filename})")
        return path

    def write(self) -> Path:
        path = self.outdir / "report.md"
        path.write_text("\n\n".join(self._parts) + "\n")
        return path
