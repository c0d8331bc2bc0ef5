"""``make reproduce PAPER=<pkg> PRESET=<row> DATA=<full set> GPUS=8`` for the StyleGAN2-family packages.

Trains the row with ``python -m <pkg>.train`` (torchrun for more than one GPU), then computes FID of the last
snapshot against the FULL dataset given in DATA (``<pkg>.eval``, i.e. :mod:`common.stylegan2.evaluate`): the
row's config draws its subset and x-flips itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from common import dist
from common.checkpoint import resolve_resume


def paper_row(package: str, preset: str, data: str, gpus: int, out: Path) -> None:
    """Train ``package``'s config row ``preset`` on ``data`` and evaluate it into ``out``; exits with their code."""
    if not data:
        raise click.UsageError(
            f"PRESET={preset} needs DATA=/path/to/the FULL dataset (zip or folder); subsets and x-flips come from "
            f"{package}/configs/{preset}.yaml"
        )
    if not Path(data).exists():
        raise click.UsageError(f"DATA={data} does not exist")
    runs = out / "runs"
    args = ["--cfg", preset, "--set", f"data.path={data}", "--outdir", str(runs)]
    cmd = [sys.executable, "-m", f"{package}.train", *args]
    if gpus > 1:
        cmd = dist.torchrun_command(f"{package}.train", args, gpus)
    click.echo(" ".join(cmd))
    if subprocess.call(cmd) != 0:
        sys.exit(1)
    run_dir = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    snapshot = resolve_resume(run_dir)
    evaluate = [sys.executable, "-m", f"{package}.eval", "--ckpt", str(snapshot), "--data", data, "--out", str(out)]
    click.echo(" ".join(evaluate))
    sys.exit(subprocess.call(evaluate))


def finished_record(out: Path, keys: Sequence[str]) -> dict[str, Any]:
    """``out/results.json`` of a finished tiny reproduction, for ``--report-only``; one usage line if there is none,
    if it is not JSON, or if it lacks one of the top-level ``keys`` the package's report reads (another package's
    or stage's record)."""
    path = out / "results.json"
    if not path.is_file():
        raise click.UsageError(f"--report-only needs a finished reproduction in {out} (no results.json there)")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise click.UsageError(f"{path} is not a readable record ({err}); rerun the reproduction") from None
    missing = [k for k in keys if not isinstance(record, dict) or k not in record]
    if missing:
        raise click.UsageError(f"{path} is not this package's record (no {', '.join(map(repr, missing))}); give "
                               f"--outdir of a finished reproduction of this package")
    return record


def parse_seeds(ctx: click.Context | None, param: click.Parameter | None, value: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; anything else is one usage line."""
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise click.BadParameter("give at least one seed, e.g. 0,1,2")
    return seeds


def reproduce_options(package: str, seeds: tuple[int, ...] = (0, 1, 2), workers: int = 2
                      ) -> Callable[[Callable[..., Any]], Any]:
    """The options every ``<package>.reproduce`` takes: ``--preset`` (tiny or a paper row), ``--data``, ``--gpus``
    for paper rows; ``--seeds``, ``--workers``, ``--smoke``, ``--report-only`` for the tiny preset; ``--outdir``."""
    options = [
        click.option("--preset", default="tiny", show_default=True,
                     help=f"tiny, or a paper row ({package}/configs/*.yaml)."),
        click.option("--data", default="", help="Paper rows: the FULL dataset (zip/folder); subsets come from the "
                     "config."),
        click.option("--gpus", default=0, type=int, show_default=True, help="Paper rows: processes for torchrun."),
        click.option("--seeds", default=",".join(map(str, seeds)), show_default=True, callback=parse_seeds,
                     help="Tiny: seeds per arm, comma-separated."),
        click.option("--workers", default=workers, show_default=True, type=click.IntRange(min=1),
                     help="Tiny: arms trained in parallel (1 thread each)."),
        click.option("--smoke", is_flag=True, help="Tiny: 4 iterations per arm, to check the pipeline end to end."),
        click.option("--report-only", is_flag=True, help="Tiny: rewrite the report from results.json and the run "
                     "dirs."),
        click.option("--outdir", default=None, help=f"Output folder [results/{package}/<preset>]."),
    ]

    def decorate(function: Callable[..., Any]) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
