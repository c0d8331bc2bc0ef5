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

import subprocess
import sys
from pathlib import Path

import click

from common import dist
from common.checkpoint import resolve_resume
from common.stylegan2.limited import REPORT_SEEDS, rewrite_report, run_testbed
from insgen.config import config_names

ARMS = ["baseline", "ADA", "InsGen", "ADA + InsGen"]  # rows of common.stylegan2.limited.ARMS
TITLE = "InsGen on the limited-data testbed"


@click.command()
@click.option("--preset", default="tiny", show_default=True, help="tiny, or a paper row (insgen/configs/*.yaml).")
@click.option("--data", default="", help="Paper rows: the FULL dataset (zip/folder); subsets come from the config.")
@click.option("--gpus", default=0, type=int, show_default=True, help="Paper rows: processes for torchrun.")
@click.option("--seeds", default=",".join(map(str, REPORT_SEEDS)), show_default=True, help="Tiny: seeds per arm.")
@click.option("--workers", default=2, show_default=True, help="Tiny: arms trained in parallel (1 thread each).")
@click.option("--smoke", is_flag=True, help="Tiny: 4 iterations per arm, to check the pipeline end to end.")
@click.option("--report-only", is_flag=True, help="Tiny: rewrite the report from results.json and the run dirs.")
@click.option("--outdir", default=None, help="Output folder [results/insgen/<preset>].")
def main(preset: str, data: str, gpus: int, seeds: str, workers: int, smoke: bool, report_only: bool,
         outdir: str | None) -> None:
    """Reproduce InsGen on the limited-data testbed or one paper row."""
    if preset not in config_names():
        raise click.UsageError(f"unknown PRESET={preset!r}; choose one of {', '.join(config_names())}")
    out = Path(outdir or Path("results") / "insgen" / preset)
    if preset != "tiny":
        _paper_row(preset, data, gpus, out)
        return
    if report_only:
        click.echo(f"wrote {rewrite_report(out, ARMS, TITLE)}")
        return
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    click.echo(f"wrote {run_testbed(out, ARMS, seed_list, workers, smoke, title=TITLE)}")


def _paper_row(preset: str, data: str, gpus: int, out: Path) -> None:
    """Train the row with torchrun (or one process) and evaluate FID against the full dataset."""
    if not data:
        raise click.UsageError(
            f"PRESET={preset} needs DATA=/path/to/the FULL dataset (zip or folder); subsets and x-flips come from "
            f"insgen/configs/{preset}.yaml"
        )
    if not Path(data).exists():
        raise click.UsageError(f"DATA={data} does not exist")
    runs = out / "runs"
    args = ["--cfg", preset, "--set", f"data.path={data}", "--outdir", str(runs)]
    cmd = [sys.executable, "-m", "insgen.train", *args]
    if gpus > 1:
        cmd = dist.torchrun_command("insgen.train", args, gpus)
    click.echo(" ".join(cmd))
    if subprocess.call(cmd) != 0:
        sys.exit(1)
    run_dir = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    snapshot = resolve_resume(run_dir)
    evaluate = [sys.executable, "-m", "insgen.eval", "--ckpt", str(snapshot), "--data", data, "--out", str(out)]
    click.echo(" ".join(evaluate))
    sys.exit(subprocess.call(evaluate))


if __name__ == "__main__":
    main()
