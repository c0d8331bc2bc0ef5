"""``make reproduce PAPER=limited``: every discriminator method on the limited-data testbed, same regime and seeds.

The regime (``configs/limited.yaml``) was chosen by the baseline alone (``limited_sweep.py``; the rule and the sweep
table are in this package's README) before any method arm ran. Each arm of :data:`ARMS` is a config file plus
section overrides; arms x ``--seeds`` (0, 1, 2: never used in the sweep) run as parallel one-thread processes, each
probing D's over-fitting gap, proxy-FD, class entropy and retrieval as it trains (``probe.py``). The report,
``results/limited/report.md``, puts the gap first (the mechanism InsGen, DynamicD and EqGAN-SA target), with
per-seed values, spread and curves, then the sample-quality proxies, sample grids and cost. Paper packages add their
rows to :data:`ARMS` when they land (their configs set ``methods``, so combinations such as
``methods: [insgen, dynamicd]`` are one more row); :data:`DEFAULT_ARMS` is what ``make reproduce PAPER=limited``
trains within 25 minutes on 2 cores. A package's reproduction may group arms into report sections (``groups``),
each compared with its own first arm (DynamicD: the limited and the all-data regime).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import multiprocessing
import os
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from common.config import load_config, set_overrides
from common.report import Report, mean_sd, per_seed
from common.stylegan2.compose import method_of_config
from common.stylegan2.config import StyleGAN2Config, preset_path
from common.stylegan2.rows import finished_record, parse_seeds
from common.stylegan2.snapshot import load_networks
from common.stylegan2.training import generate_images, load_dataset, replace_cfg, train
from common.threads import configure_threads

LIMITED = str(preset_path("limited"))
ALL_DATA = {"data": {"subset": 1700}}  # every shape but the 300 held out for the gap (the 'sufficient data' regime)
DYNAMICD_DEC, DYNAMICD_INC = ("dynamicd", "configs/tiny.yaml"), ("dynamicd", "configs/tiny_inc.yaml")
# report row -> (config file: a path, or (package, file) inside an installed package; overrides: sections of
# values, or a top-level key such as ``methods``)
ARMS: dict[str, tuple[str | tuple[str, str], dict[str, Any]]] = {
    "baseline": (LIMITED, {}),
    "ADA": (LIMITED, {"augment": {"mode": "ada"}}),
    "InsGen": (("insgen", "configs/tiny.yaml"), {}),
    "ADA + InsGen": (("insgen", "configs/tiny.yaml"), {"augment": {"mode": "ada"}, "insgen": {"view_pipe": None}}),
    "DynamicD": (DYNAMICD_DEC, {}),  # the limited-data scheme: decreasing width, random subsets
    "DynamicD inc": (DYNAMICD_INC, {}),
    # control: a constant sub-network at the mean width of both schedules (is it the schedule, or less capacity?)
    "constant width 0.75": (DYNAMICD_INC, {"dynamicd": {"occupy_start": 0.75, "occupy_end": 0.75}}),
    "InsGen + DynamicD": (("insgen", "configs/tiny.yaml"), {
        "methods": ["insgen", "dynamicd"],
        "dynamicd": {"occupy_start": 1.0, "occupy_end": 0.5, "randomly_select": True, "keepd": 3}}),
    # EqGAN-SA at 16 px: D has outputs at 8x8 and 4x4 only, so the two coarse levels are aligned (eqgan/README.md)
    "EqGAN-SA": (LIMITED, {"methods": ["eqgan"], "eqgan": {"levels": ["b8", "b16"]}}),
    "baseline, all data": (LIMITED, ALL_DATA),
    "DynamicD, all data": (DYNAMICD_DEC, ALL_DATA),
    "DynamicD inc, all data": (DYNAMICD_INC, ALL_DATA),
}
# what make reproduce PAPER=limited trains (fits 25 minutes on 2 cores; --arms picks any rows of ARMS)
DEFAULT_ARMS = ("baseline", "ADA", "InsGen", "ADA + InsGen", "DynamicD")
REPORT_SEEDS = (0, 1, 2)
GRID_SIZE = 64
SMOKE_ITERATIONS, SMOKE_FAKES = 4, 100


@dataclass
class ArmSpec:
    """One process: an arm of :data:`ARMS`, a seed, its run dir; ``smoke`` trains 4 iterations."""

    arm: str
    seed: int
    run_dir: str
    smoke: bool = False


def _config_file(source: str | tuple[str, str]) -> str:
    if isinstance(source, str):
        return source
    package, name = source
    return str(importlib.resources.files(package) / name)


def arm_slug(arm: str) -> str:
    """The arm's name in file names: 'ADA + InsGen' -> 'ada_insgen', 'DynamicD, all data' -> 'dynamicd_all_data'."""
    return re.sub(r"[^a-z0-9]+", "_", arm.lower()).strip("_")


def arm_config(spec: ArmSpec) -> tuple[StyleGAN2Config, Any]:
    """The arm's config (with the seed, and a 4-iteration budget in smoke mode) and its (composed) method."""
    source, overrides = ARMS[spec.arm]
    path, sets = _config_file(source), set_overrides(overrides)
    method = method_of_config(path, sets)
    cfg = dataclasses.replace(load_config(method.config_class, path, sets), seed=spec.seed)
    if spec.smoke:
        kimg = SMOKE_ITERATIONS * cfg.train.batch / 1000
        cfg = replace_cfg(cfg, train={"total_kimg": kimg, "kimg_per_tick": kimg},
                          probe={"every": 2, "num_fakes": SMOKE_FAKES})
    return cfg, method


def run_arm(spec: ArmSpec) -> dict[str, Any]:
    """Train one arm on CPU with one thread; its probe history, CPU and wall time (the run dir keeps the rest)."""
    configure_threads(1)
    cfg, method = arm_config(spec)
    start, cpu_start = time.perf_counter(), time.process_time()
    state = train(cfg, spec.run_dir, method=method, device="cpu")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    history = [json.loads(line) for line in (Path(spec.run_dir) / "probe.jsonl").read_text().splitlines()]
    return {
        "spec": dataclasses.asdict(spec),
        "history": history,
        "final": history[-1],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "iterations": state.batch_idx,
        "kimg": cfg.train.total_kimg,
    }


def sample_grid(run_dir: str | Path) -> np.ndarray:
    """G_ema's images of 64 fixed latents (seed 123), from the run's last snapshot."""
    G = load_networks(run_dir).G_ema
    z = torch.randn([GRID_SIZE, G.z_dim], generator=torch.Generator().manual_seed(123))
    return generate_images(G, z, None)


def training_images(cfg: StyleGAN2Config, count: int = GRID_SIZE) -> np.ndarray:
    """The first ``count`` images of the arm's training subset (uint8 NCHW)."""
    dataset = load_dataset(cfg)
    return np.stack([dataset[i][0] for i in range(min(count, len(dataset)))])


Groups = list[tuple[str, list[str]]]
"""Report sections: (heading, arms); each group's first arm is the reference its other arms are compared with."""


def run_testbed(out: Path, arms: list[str], seeds: list[int], workers: int, smoke: bool = False,
                title: str = "Limited-data testbed", groups: Groups | None = None) -> Path:
    """Train every arm x seed, write ``out/results.json`` and ``out/report.md``; returns the report's path."""
    from common.data.synthetic import digits_dataset
    from common.metrics import load_proxy

    os.environ.setdefault("GENFORCE_NO_PROGRESS", "1")
    out.mkdir(parents=True, exist_ok=True)
    digits_dataset(resolution=load_config(StyleGAN2Config, LIMITED).data.resolution)  # shared caches, built once
    load_proxy()
    specs = [ArmSpec(arm, seed, str(out / "runs" / f"{arm_slug(arm)}-seed{seed}"), smoke)
             for arm in sorted(arms, key=lambda a: "InsGen" not in a)  # slower arms first: the pool ends sooner
             for seed in seeds]
    start = time.perf_counter()
    click.echo(f"training {len(specs)} arms, {workers} at a time (one thread each); runs and probes in {out / 'runs'}")
    results = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done, future in enumerate(as_completed([pool.submit(run_arm, spec) for spec in specs]), start=1):
            result = future.result()
            click.echo(f"[{done}/{len(specs)}] {result['spec']['arm']} seed {result['spec']['seed']}: gap "
                       f"{result['final']['gap']:.3f}, proxy-FD {result['final']['proxy_fd']:.1f}, "
                       f"{result['seconds']:.0f} s ({(time.perf_counter() - start) / 60:.1f} min elapsed)")
            results.append(result)
    wall = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps({"wall_seconds": wall, "workers": workers, "results": results},
                                                 indent=1))
    return write_report(out, results, arms, wall, workers, title, groups)


RECORD_KEYS = ("wall_seconds", "workers", "results")  # results.json keys --report-only reads


def rewrite_report(out: Path, arms: list[str], title: str = "Limited-data testbed",
                   groups: Groups | None = None) -> Path:
    """The report again from ``out/results.json`` and the run dirs, without training (e.g. after a wording fix)."""
    record = finished_record(out, RECORD_KEYS)
    return write_report(out, record["results"], arms, record["wall_seconds"], record["workers"], title, groups)


def run_or_rewrite(out: Path, arms: list[str], seeds: list[int], workers: int, smoke: bool, report_only: bool,
                   title: str = "Limited-data testbed", groups: Groups | None = None) -> Path:
    """A reproduction's tiny preset: train the arms (:func:`run_testbed`), or with ``report_only`` rewrite the report
    from an earlier run (:func:`rewrite_report`)."""
    if report_only:
        return rewrite_report(out, arms, title, groups)
    return run_testbed(out, arms, seeds, workers, smoke, title=title, groups=groups)


def _data_name(cfg: StyleGAN2Config) -> str:
    if cfg.data.source == "shapes":
        return f"{cfg.data.num_images:,} offline shapes"
    if cfg.data.source == "digits":
        return "1,797 scikit-learn digits"
    return f"the images of {cfg.data.path}"


def _by_arm(results: list[dict[str, Any]], arm: str) -> list[dict[str, Any]]:
    return sorted((r for r in results if r["spec"]["arm"] == arm), key=lambda r: r["spec"]["seed"])


def late_gap(result: dict[str, Any]) -> float:
    """Mean gap over the probes of the second half of training."""
    half = result["iterations"] / 2
    late = [h["gap"] for h in result["history"] if h["iteration"] >= half] or [result["final"]["gap"]]
    return statistics.mean(late)


def gap_verdict(arm: str, gaps: list[float], reference: str, reference_gaps: list[float]) -> str:
    """How the arm's final gaps compare with a reference row's, seed by seed and against its seed spread."""
    diffs = [g - b for g, b in zip(gaps, reference_gaps)]
    smaller = sum(d < 0 for d in diffs)
    mean_diff = statistics.mean(diffs)
    spread = statistics.stdev(reference_gaps) if len(reference_gaps) > 1 else float("nan")
    text = (f"{arm} vs {reference}: final gap {mean_sd(gaps)} vs {mean_sd(reference_gaps)}; smaller on {smaller} of "
            f"{len(diffs)} seeds, mean difference {mean_diff:+.2f} ({reference} seed sd {spread:.2f}).")
    if smaller == len(diffs) and -mean_diff > spread:
        return text + f" Less over-fitting on every seed, by more than the {reference} seed spread."
    if smaller == 0 and mean_diff > spread:
        return text + f" More over-fitting on every seed, by more than the {reference} seed spread."
    return text + " No difference beyond seed noise."


def _regime(cfg: StyleGAN2Config) -> str:
    """'100 of 2,000 offline shapes at 16x16' for a config's training data."""
    res = cfg.data.resolution
    return f"{cfg.data.subset:,} of {_data_name(cfg)} at {res}x{res}"


def _gap_section(report: Report, results: list[dict[str, Any]], arms: list[str], low: float, top: float) -> None:
    """The gap table of one group of arms (the first is the reference), the verdicts and per-seed curves."""
    reference_finals = [r["final"]["gap"] for r in _by_arm(results, arms[0])]
    rows = []
    for arm in arms:
        runs = _by_arm(results, arm)
        finals, lates = [r["final"]["gap"] for r in runs], [late_gap(r) for r in runs]
        ratios = [g / b if abs(b) > 1e-6 else float("nan") for g, b in zip(finals, reference_finals)]
        rows.append([arm, per_seed(finals), mean_sd(finals), per_seed(lates), mean_sd(lates),
                     per_seed(ratios)])
    report.table(["arm", "final gap per seed", "final gap mean ± sd", "2nd-half gap per seed",
                  "2nd-half mean ± sd", f"final / {arms[0]} per seed"], rows)
    verdicts = []
    for arm in arms[1:]:  # against the reference, and a method with ADA also against ADA alone
        gaps = [r["final"]["gap"] for r in _by_arm(results, arm)]
        for reference in [arms[0]] + (["ADA"] if arm.startswith("ADA + ") and "ADA" in arms else []):
            reference_gaps = [r["final"]["gap"] for r in _by_arm(results, reference)]
            verdicts.append(gap_verdict(arm, gaps, reference, reference_gaps))
    if verdicts:
        report.text("\n".join(f"- {v}" for v in verdicts))
    for arm in arms:
        series = {f"seed {r['spec']['seed']}": ([h["iteration"] for h in r["history"]],
                                                [h["gap"] for h in r["history"]]) for r in _by_arm(results, arm)}
        report.curves(f"gap_{arm_slug(arm)}.png", series, title=f"D gap, {arm}", xlabel="iteration", ylabel="gap",
                      ylim=(low, top * 1.05))


def write_report(out: Path, results: list[dict[str, Any]], arms: list[str], wall: float, workers: int,
                 title: str, groups: Groups | None = None) -> Path:
    """The markdown report (every number in it comes from ``results``); one gap table per group of arms."""
    groups = groups or [("", arms)]
    cfg, _ = arm_config(ArmSpec(arms[0], 0, ""))
    first = results[0]
    seeds = sorted({r["spec"]["seed"] for r in results})
    report = Report(out, title)
    data = _data_name(cfg)
    regimes = {heading: arm_config(ArmSpec(group[0], 0, ""))[0] for heading, group in groups}
    trained = "; ".join(f"{heading}: {_regime(c)}" for heading, c in regimes.items() if heading) or (
        f"{_regime(cfg)} (a fixed subset)")
    report.text(
        f"Regime (`common/stylegan2/configs/limited.yaml`, chosen by the baseline alone, see "
        f"`common/stylegan2/README.md`): {trained}; G at most {cfg.G.channel_max} channels, D at most "
        f"{cfg.D.channel_max}, R1 gamma {cfg.loss.r1_gamma:g}, batch {cfg.train.batch}, {first['iterations']} "
        f"iterations per arm, seeds {', '.join(map(str, seeds))}. D's gap against {cfg.probe.heldout} held-out "
        f"images, samples against all {data}. Wall time {wall / 60:.1f} min on {workers} one-thread processes. "
        "Command: `make reproduce PAPER=limited` (InsGen's rows: `make reproduce PAPER=insgen`; DynamicD's: "
        "`make reproduce PAPER=dynamicd`)."
    )

    report.heading("D over-fitting gap (primary)")
    report.text(
        "gap = mean D logit on the training images - mean on held-out images, un-augmented (ADA's over-fitting "
        "diagnostic), at the end of training and averaged over the probes of the second half (less noisy). D is "
        "measured as it trains: a DynamicD arm's current sub-network (random subsets re-drawn for every batch of 20)."
    )
    top = max(h["gap"] for r in results for h in r["history"])
    low = min(0.0, min(h["gap"] for r in results for h in r["history"]))
    for heading, group in groups:
        if heading:
            report.heading(heading, level=3)
        _gap_section(report, results, group, low, top)

    report.heading("Sample quality and diversity (reported, not claimed)")
    report.text(
        f"proxy-FD: Fréchet distance of {cfg.probe.num_fakes:,} G_ema samples to all {data} in the project's "
        "offline proxy-CNN space (not FID). class entropy: entropy of the classes a logistic regression (fitted on "
        f"all {data} at 8x8) assigns to the samples (max {first['final']['max_class_entropy'] or 0:.2f}, ln of the "
        "number of classes; a collapse guard). retrieval top-1: two bgc views of each held-out image matched by D's "
        "pooled features (meaningless for random-subset DynamicD, whose two views meet different sub-networks)."
    )
    rows = []
    for arm in arms:
        runs = _by_arm(results, arm)
        finals = [r["final"] for r in runs]
        rows.append([arm, per_seed([f["proxy_fd"] for f in finals], "{:.0f}"),
                     mean_sd([f["proxy_fd"] for f in finals], "{:.0f}"),
                     per_seed([f["class_entropy"] for f in finals]),
                     per_seed([f["retrieval_top1"] for f in finals], "{:.3f}"),
                     per_seed([f["augment_p"] for f in finals]),
                     per_seed([r["cpu_seconds"] for r in runs], "{:.0f}")])
    report.table(["arm", "proxy-FD per seed", "proxy-FD mean ± sd", "class entropy per seed",
                  "retrieval top-1 per seed", "final augment p", "CPU s per seed"], rows)

    report.heading("Samples")
    for heading, regime in regimes.items():
        suffix = f"_{arm_slug(heading)}" if heading else ""
        report.image_grid(f"training_images{suffix}.png", training_images(regime),
                          caption=f"{min(GRID_SIZE, regime.data.subset)} of the {regime.data.subset} training images"
                          + (f" ({heading})" if heading else ""), scale=4, spacing=4)
    for arm in arms:
        run = _by_arm(results, arm)[0]
        report.image_grid(f"samples_{arm_slug(arm)}.png", sample_grid(run["spec"]["run_dir"]),
                          caption=f"{arm}, seed {run['spec']['seed']} (G_ema, 64 fixed latents)", scale=4, spacing=4)

    report.heading("Cost")
    cpu = {arm: statistics.median(r["cpu_seconds"] for r in _by_arm(results, arm)) for arm in arms}
    report.text(
        "Median CPU seconds per arm (one thread, probes included): "
        + ", ".join(f"{arm} {cpu[arm]:.0f}" for arm in arms)
        + f". All arms: {sum(r['cpu_seconds'] for r in results) / 60:.1f} CPU min; this run took {wall / 60:.1f} min "
        f"of wall time on {workers} processes."
    )
    return report.write()


@click.command()
@click.option("--preset", default="tiny", show_default=True, help="tiny: the CPU testbed (the only preset).")
@click.option("--data", default="", help="Unused (the testbed generates its data).")
@click.option("--gpus", default=0, type=int, help="Unused (CPU processes).")
@click.option("--seeds", default=",".join(map(str, REPORT_SEEDS)), show_default=True, callback=parse_seeds,
              help="Seeds per arm, comma-separated.")
@click.option("--arms", default=",".join(DEFAULT_ARMS), show_default=True,
              help=f"Comma-separated rows of the report, from: {', '.join(ARMS)}.")
@click.option("--workers", default=2, show_default=True, help="Arms trained in parallel (one thread each).")
@click.option("--smoke", is_flag=True, help="4 iterations per arm, to check the pipeline end to end.")
@click.option("--report-only", is_flag=True, help="Rewrite the report from results.json and the run dirs.")
@click.option("--outdir", default=None, help="Output folder [results/limited].")
def main(preset: str, data: str, gpus: int, seeds: list[int], arms: str, workers: int, smoke: bool, report_only: bool,
         outdir: str | None) -> None:
    """Train every discriminator method on the limited-data regime and write the report."""
    if preset != "tiny":
        raise click.UsageError(f"the limited-data testbed has one preset, tiny (got PRESET={preset})")
    names = [a.strip() for a in arms.split(",") if a.strip()]
    unknown = [a for a in names if a not in ARMS]
    if unknown:
        raise click.UsageError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if names[:1] != ["baseline"]:
        raise click.UsageError("--arms must start with baseline (every other arm is compared with it)")
    out = Path(outdir or "results/limited")
    click.echo(f"wrote {run_or_rewrite(out, names, seeds, workers, smoke, report_only)}")


if __name__ == "__main__":
    main()
