"""``make reproduce PAPER=insgen``: InsGen on the limited-data testbed on CPU, or a paper row on GPUs.

Tiny (default): the testbed of ``common.stylegan2.limited`` (a regime chosen by the baseline alone, see
``common/stylegan2/README.md``) with the rows baseline, ADA, InsGen and ADA + InsGen, seeds 0, 1, 2, as parallel
one-thread processes. InsGen's settings are ``configs/tiny.yaml``, fixed before any InsGen arm ran. Writes
``results/insgen/tiny/report.md``: D's over-fitting gap first (per seed, spread, curves), then proxy-FD against all
digits, class entropy, instance retrieval, sample grids and cost.

Paper rows: ``make reproduce PAPER=insgen PRESET=ffhq2k DATA=/data/ffhq256.zip GPUS=8`` trains the row with torchrun
and then computes FID of the last snapshot against the FULL dataset given in DATA (spec §5).
"""

from __future__ import annotations

from pathlib import Path

import click

from common.stylegan2.limited import run_or_rewrite
from common.stylegan2.rows import paper_row, reproduce_options
from insgen.config import config_names

ARMS = ["baseline", "ADA", "InsGen", "ADA + InsGen"]  # rows of common.stylegan2.limited.ARMS
TITLE = "InsGen on the limited-data testbed"


@click.command()
@reproduce_options("insgen")
def main(preset: str, data: str, gpus: int, seeds: list[int], workers: int, smoke: bool, report_only: bool,
         outdir: str | None) -> None:
    """Reproduce InsGen on the limited-data testbed or one paper row."""
    if preset not in config_names():
        raise click.UsageError(f"unknown PRESET={preset!r}; choose one of {', '.join(config_names())}")
    out = Path(outdir or Path("results") / "insgen" / preset)
    if preset != "tiny":
        paper_row("insgen", preset, data, gpus, out)
        return
    click.echo(f"wrote {run_or_rewrite(out, ARMS, seeds, workers, smoke, report_only, TITLE)}")


if __name__ == "__main__":
    main()
