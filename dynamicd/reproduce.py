"""``make reproduce PAPER=dynamicd``: DynamicD on the limited-data testbed on CPU, or a paper row on GPUs.

Tiny (default): the testbed of ``common.stylegan2.limited`` (a regime chosen by the baseline alone, see
``common/stylegan2/README.md``) in two data regimes, as the paper's two schemes: 100 shapes (limited) and all 1,700
shapes outside the 300 held out (sufficient). In each, constant width (the baseline), increasing 0.5 -> 1.0 first
channels (``configs/tiny_inc.yaml``) and decreasing 1.0 -> 0.5 random subsets, keepd 3 (``configs/tiny.yaml``),
plus, on limited data, the control arm "constant width 0.75" (the first 75 % of every dynamic layer throughout: the
schedules' mean width without a schedule), seeds 0, 1, 2, as parallel one-thread processes; DynamicD's settings were
fixed from the spec before any DynamicD arm ran. Writes
``results/dynamicd/tiny/report.md``: D's over-fitting gap per regime first (per seed, spread, curves), then
proxy-FD, class entropy (the collapse guard), sample grids and cost.

Paper rows: ``make reproduce PAPER=dynamicd PRESET=ffhq2k_dec DATA=/data/ffhq256.zip GPUS=8`` trains the row with
torchrun and computes FID of the last snapshot against the FULL dataset given in DATA.
"""

from __future__ import annotations

from pathlib import Path

import click

from common.stylegan2.limited import run_or_rewrite
from common.stylegan2.rows import paper_row, reproduce_options
from dynamicd.config import config_names

GROUPS = [
    ("Limited data", ["baseline", "DynamicD inc", "DynamicD", "constant width 0.75"]),
    ("All data", ["baseline, all data", "DynamicD inc, all data", "DynamicD, all data"]),
]  # rows of common.stylegan2.limited.ARMS; the first of each group is constant width
ARMS = [arm for _, arms in GROUPS for arm in arms]
TITLE = "DynamicD on the limited-data testbed"


@click.command()
@reproduce_options("dynamicd")
def main(preset: str, data: str, gpus: int, seeds: list[int], workers: int, smoke: bool, report_only: bool,
         outdir: str | None) -> None:
    """Reproduce DynamicD on the limited-data testbed or one paper row."""
    if preset not in config_names() or preset == "tiny_inc":
        rows = ", ".join(n for n in config_names() if n != "tiny_inc")
        raise click.UsageError(f"unknown PRESET={preset!r}; choose one of {rows}")
    out = Path(outdir or Path("results") / "dynamicd" / preset)
    if preset != "tiny":
        paper_row("dynamicd", preset, data, gpus, out)
        return
    click.echo(f"wrote {run_or_rewrite(out, ARMS, seeds, workers, smoke, report_only, TITLE, GROUPS)}")


if __name__ == "__main__":
    main()
