"""``make reproduce PAPER=<pkg> [PRESET=<row>] [DATA=<path>] [GPUS=<n>]``: dispatch to ``<pkg>/reproduce.py``.

Each paper package owns a ``reproduce.py`` whose click CLI takes ``--preset``, ``--data`` and ``--gpus``
(``--preset tiny`` runs offline on CPU and writes ``results/<pkg>/tiny/report.md``; a paper preset reads ``--data``
and launches ``torchrun`` on ``--gpus`` processes). A package without one yet is reported in one line, exit 2.
``PAPER=limited`` runs the limited-data testbed of ``common.stylegan2`` (``results/limited/report.md``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import click

PAPERS = ("dynamicd", "procA", "es_ddpm", "volumegan", "cmpl", "eqgan", "oneshot_gan", "insgen", "insloc", "ghfeat")
# reproductions that are not a paper package: the limited-data testbed every discriminator method reports on
TESTBEDS = {"limited": "common.stylegan2.limited"}


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--paper", required=True, help="Paper package, e.g. insgen.")
@click.option("--preset", default="tiny", show_default=True, help="Config row (configs/<preset>.yaml).")
@click.option("--data", default="", help="Dataset path for paper presets.")
@click.option("--gpus", default=0, type=int, help="Processes for torchrun (0: one process, CPU or 1 GPU).")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def main(paper: str, preset: str, data: str, gpus: int, extra: tuple[str, ...]) -> None:
    """Run the reproduction entry of one paper package."""
    if paper not in PAPERS and paper not in TESTBEDS:
        click.echo(f"unknown PAPER={paper!r}; choose one of: {', '.join([*PAPERS, *TESTBEDS])}", err=True)
        sys.exit(2)
    module = TESTBEDS.get(paper, f"{paper}.reproduce")
    if importlib.util.find_spec(module) is None:
        click.echo(f"{paper} is not implemented yet: {paper}/reproduce.py does not exist (see its README).", err=True)
        sys.exit(2)
    argv = [sys.executable, "-m", module, "--preset", preset, "--gpus", str(gpus)]
    if data:
        argv += ["--data", data]
    sys.exit(subprocess.call([*argv, *extra]))


if __name__ == "__main__":
    main()
