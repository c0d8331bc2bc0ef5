"""``python -m common.stylegan2.limited_sweep``: choose the limited-data regime by the BASELINE alone.

Trains plain StyleGAN2 (no method, seed 100: never a reporting seed) over a grid of training-set sizes, data,
D width relative to G, R1 gamma and resolution, with and without ADA, probing D's over-fitting gap every
``--probe-every`` iterations (``common/stylegan2/probe.py``), and applies the selection rule below, written down
before any method arm ran. Writes ``<out>/sweep.md`` (the table) and ``<out>/sweep.json`` (every curve).

Selection rule, for the no-augmentation baseline, evaluated at each budget B in ``BUDGETS`` on the curve up to B:

1. over-fitting: the gap at B is >= ``MIN_GAP`` (1.0);
2. still growing: the mean gap over the last third of the probes up to B exceeds the mean over the middle third;
3. no collapse: class entropy at B >= ``MIN_ENTROPY_FRACTION`` (0.65) x ln(#classes) (1.5 of 2.30 for digits);
4. affordable: the 4 arms x 3 seeds of the report (baseline, ADA, InsGen, ADA + InsGen; InsGen measured at 1.75x
   the baseline's CPU time) fit in ``MAX_REPORT_MINUTES`` (22) on 2 one-thread workers, from this run's CPU time
   at B.

Among the (configuration, budget) pairs that pass, the regime has the most training images, then the narrower D,
then the larger gamma, then the shorter budget: the least extreme setting in which the paper's problem is visible.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from common.config import load_config
from common.report import markdown_table
from common.stylegan2.config import StyleGAN2Config, preset_path
from common.stylegan2.training import replace_cfg, train
from common.threads import configure_threads

SWEEP_SEED = 100  # reporting seeds are 0, 1, 2
BUDGETS = (600, 900, 1200, 1500)  # iterations of batch 32
MIN_GAP = 1.0
MIN_ENTROPY_FRACTION = 0.65
MAX_REPORT_MINUTES = 22.0
ARMS_CPU_FACTOR = 1 + 1 + 1.75 + 1.75  # baseline, ADA, InsGen, ADA + InsGen per seed, relative to the baseline
REPORT_SEEDS, WORKERS = 3, 2


@dataclass
class SweepRun:
    """One baseline run: its grid coordinates become config overrides of the tiny preset."""

    data: str  # digits or shapes
    images: int
    d_width: int  # D channels relative to G's (G: channel base 512, max 32 at 16 px)
    gamma: float
    resolution: int = 16
    augment: str = "noaug"
    iterations: int = BUDGETS[-1]
    probe_every: int = 100
    run_dir: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return (f"{self.data} {self.resolution}px N={self.images} D x{self.d_width} gamma={self.gamma:g} "
                f"{self.augment}")


def default_grid() -> list[SweepRun]:
    """Digits at 16 px over N x D width x gamma without augmentation; shapes and 32 px at a few points; ADA rows."""
    runs = [SweepRun("digits", n, w, g) for n in (16, 32, 64, 100) for w in (1, 2) for g in (0.01, 0.05)]
    runs += [SweepRun("shapes", n, 2, 0.01) for n in (32, 100)]
    runs += [SweepRun("digits", 32, 1, 0.05, resolution=32)]
    runs += [SweepRun("digits", n, 1, 0.05, augment="ada") for n in (16, 32, 64, 100)]
    return runs


def run_config(run: SweepRun) -> StyleGAN2Config:
    """The tiny networks (G channel base 512, max 32) on the run's data, D widened ``d_width`` times."""
    cfg = load_config(StyleGAN2Config, preset_path("tiny"))
    base = 512 * run.resolution // 16  # same channels per block at 32 px
    data = {"source": run.data, "resolution": run.resolution, "subset": run.images, "subset_seed": 0, "workers": 0}
    if run.data == "shapes":
        data["num_images"] = 2000
    return replace_cfg(
        dataclasses.replace(cfg, seed=SWEEP_SEED),
        data=data,
        G={"channel_base": base, "channel_max": 32},
        D={"channel_base": base * run.d_width, "channel_max": 32 * run.d_width},
        loss={"r1_gamma": run.gamma},
        augment={"mode": run.augment},
        train={"total_kimg": run.iterations * 32 / 1000, "batch": 32, "kimg_per_tick": run.iterations * 32 / 1000,
               "snap_ticks": 1000, "metrics": ["none"]},
        probe={"every": run.probe_every},
        **run.overrides,
    )


def train_run(run: SweepRun) -> dict[str, Any]:
    configure_threads(1)
    start = time.process_time()
    train(run_config(run), run.run_dir, device="cpu")
    history = [json.loads(line) for line in (Path(run.run_dir) / "probe.jsonl").read_text().splitlines()]
    return {"run": dataclasses.asdict(run), "label": run.label, "history": history,
            "cpu_seconds": time.process_time() - start}


def evaluate(result: dict[str, Any], budget: int) -> dict[str, Any]:
    """The selection rule's four checks for one run at one budget (module docstring)."""
    curve = [h for h in result["history"] if h["iteration"] <= budget]
    gaps = [h["gap"] for h in curve]
    third = max(len(gaps) // 3, 1)
    last, middle = gaps[-third:], gaps[-2 * third : -third] or gaps[:1]
    final = curve[-1]
    entropy_ok = final["class_entropy"] is None or (
        final["class_entropy"] >= MIN_ENTROPY_FRACTION * final["max_class_entropy"]
    )
    cpu = result["cpu_seconds"] * budget / result["run"]["iterations"]
    minutes = cpu * ARMS_CPU_FACTOR * REPORT_SEEDS / WORKERS / 60
    checks = {
        "gap": final["gap"] >= MIN_GAP,
        "growing": statistics.mean(last) > statistics.mean(middle),
        "entropy": entropy_ok,
        "affordable": minutes <= MAX_REPORT_MINUTES,
    }
    return {"budget": budget, "gap": final["gap"], "entropy": final["class_entropy"], "proxy_fd": final["proxy_fd"],
            "report_minutes": minutes, "checks": checks, "passes": all(checks.values())}


def choose(results: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The regime: among passing (run, budget) pairs, most images, narrower D, larger gamma, shorter budget."""
    passing = [(r, e) for r in results if r["run"]["augment"] == "noaug"
               for e in (evaluate(r, b) for b in BUDGETS) if e["passes"]]
    if not passing:
        return None
    return min(passing, key=lambda p: (-p[0]["run"]["images"], p[0]["run"]["d_width"], -p[0]["run"]["gamma"],
                                       p[1]["budget"]))


def write_table(out: Path, results: list[dict[str, Any]]) -> Path:
    rows = []
    for r in sorted(results, key=lambda r: r["label"]):
        for budget in BUDGETS:
            e = evaluate(r, budget)
            failed = [name for name, ok in e["checks"].items() if not ok]
            entropy = f"{e['entropy']:.2f}" if e["entropy"] is not None else "-"
            rows.append([r["label"], budget, f"{e['gap']:.2f}", entropy, f"{e['proxy_fd']:.0f}",
                         f"{e['report_minutes']:.0f}", "pass" if e["passes"] else "fails: " + ", ".join(failed)])
    chosen = choose(results)
    text = markdown_table(["baseline run (seed 100)", "iterations", "gap", "class entropy", "proxy-FD",
                           "report min", "rule"], rows)
    verdict = ("no configuration passes the rule" if chosen is None else
               f"chosen: {chosen[0]['label']} at {chosen[1]['budget']} iterations")
    path = out / "sweep.md"
    path.write_text(f"# Limited-data regime sweep (baseline only)\n\n{text}\n\n{verdict}\n")
    return path


@click.command()
@click.option("--out", default="results/limited/sweep", show_default=True, help="Output folder.")
@click.option("--workers", default=2, show_default=True, help="Runs in parallel (one thread each).")
@click.option("--only", default=None, help="Comma-separated run indices of the grid (re-run a part).")
def main(out: str, workers: int, only: str | None) -> None:
    """Train the baseline grid, apply the selection rule and write the sweep table."""
    os.environ.setdefault("GENFORCE_NO_PROGRESS", "1")
    root = Path(out)
    grid = default_grid()
    try:
        picked = [int(i) for i in only.split(",")] if only else list(range(len(grid)))
    except ValueError:
        raise click.UsageError(f"--only takes comma-separated run indices, got {only!r}") from None
    if any(not 0 <= i < len(grid) for i in picked):
        raise click.UsageError(f"--only: the grid has runs 0-{len(grid) - 1}")
    runs = [grid[i] for i in picked]
    root.mkdir(parents=True, exist_ok=True)
    for i, run in zip(picked, runs):
        run.run_dir = str(root / "runs" / f"{i:02d}")
    store = root / "sweep.json"
    results = {r["label"]: r for r in json.loads(store.read_text())} if store.exists() else {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for future in as_completed([pool.submit(train_run, run) for run in runs]):
            result = future.result()
            results[result["label"]] = result
            store.write_text(json.dumps(list(results.values()), indent=1))
            final = result["history"][-1]
            click.echo(f"{result['label']}: gap {final['gap']:.2f}, entropy {final['class_entropy']}, "
                       f"{result['cpu_seconds']:.0f} CPU s")
    click.echo(f"wrote {write_table(root, list(results.values()))}")


if __name__ == "__main__":
    main()
