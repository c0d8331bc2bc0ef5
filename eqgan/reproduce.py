"""``make reproduce PAPER=eqgan``: EqGAN-SA's ablation rows on 32 px shapes on CPU, or a paper row on GPUs.

Tiny (default): ``configs/tiny.yaml`` (a regime chosen by the baseline alone with ``--sweep``; rule and table in the
README) with the paper's three rows, baseline (no SEL, no L_align), + SEL, + SEL + L_align, on seeds 0, 1, 2 as
parallel one-thread processes. Measured, all with the trained D:

- DI (primary, spec §5): mean raw D(real) - mean raw D(G(z)); per tick during training (``Metrics/DI`` of the Dmain
  steps) and at the end on 512 reals and 512 fakes of the training G;
- the mechanism: whether content follows the heatmap (correlation of the level-1 centre with the detected object
  centre of 256 G_ema samples; computed when the report is written, so ``--report-only`` adds it to older runs);
  how well D's Grad-CAM on fakes (the loss's official CAM, normalised) matches the heatmap G was given:
  IoU of the two maps thresholded at 0.5 and their mean L1 error, per level, on 256 fakes (the baseline's G ignores
  its heatmaps, so its numbers are the chance level);
- reported, not claimed: proxy-FD of 1,000 G_ema samples against all shapes, class entropy (collapse guard).

Writes ``results/eqgan/tiny/report.md`` (DI first, per seed, spread, curves). Paper rows: ``make reproduce
PAPER=eqgan PRESET=lsun_cat DATA=/data/lsuncat200k.zip GPUS=8`` trains the row and computes FID against DATA.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from common.config import load_config
from common.metrics import build_extractor, fid_from_stats, real_stats
from common.metrics.gan import fake_stats
from common.report import Report
from common.stylegan2.evaluate import disequilibrium
from common.stylegan2.probe import PixelClassifier, class_entropy
from common.stylegan2.rows import finished_record, paper_row, reproduce_options
from common.stylegan2.snapshot import load_networks
from common.stylegan2.training import generate_images, load_dataset, replace_cfg, train
from common.threads import configure_threads
from eqgan.align import CAM_FEATURES, gradcam_weights, minmax
from eqgan.config import EqGANConfig, config_names, config_path
from eqgan.method import EqGANSA
from eqgan.spatial import LEVELS, generate_heatmap_multi, heatmap_spec

ARMS = {  # report row -> eqgan flags (the paper's ablation table)
    "baseline": {"use_sel": False, "align_loss": False},
    "+ SEL": {"use_sel": True, "align_loss": False},
    "+ SEL + L_align": {"use_sel": True, "align_loss": True},
}
REPORT_SEEDS = (0, 1, 2)
SWEEP_SEED = 100
# baseline-only regime sweep: (label, overrides), cheapest first; the rule is in select_regime
SWEEP_BUDGET = {"train": {"total_kimg": 16}}  # 1,000 iterations of 16; the rule reads 600 / 800 / 1,000
WIDE = {"G": {"channel_base": 1024, "channel_max": 64}, "D": {"channel_base": 1024, "channel_max": 64}}
SWEEP = [  # as run before tiny.yaml took the chosen row (max 32 ch, gamma 0.05, 600 iterations)
    ("D/G max 32 ch, gamma 0.05", {**SWEEP_BUDGET}),
    ("D/G max 64 ch, gamma 0.05", {**SWEEP_BUDGET, **WIDE}),
    ("D/G max 64 ch, gamma 0.01", {**SWEEP_BUDGET, **WIDE, "loss": {"r1_gamma": 0.01}}),
]
NUM_DI, NUM_CAM, NUM_FD = 512, 256, 1000


@dataclasses.dataclass
class RunSpec:
    arm: str
    seed: int
    run_dir: str
    overrides: dict[str, Any]
    smoke: bool = False


def run_config(spec: RunSpec) -> EqGANConfig:
    cfg = load_config(EqGANConfig, config_path("tiny"))
    cfg = replace_cfg(dataclasses.replace(cfg, seed=spec.seed), eqgan=ARMS[spec.arm], **spec.overrides)
    if spec.smoke:
        kimg = 4 * cfg.train.batch / 1000
        cfg = replace_cfg(cfg, train={"total_kimg": kimg, "kimg_per_tick": kimg / 2})
    return cfg


@torch.no_grad()
def _fakes(G: torch.nn.Module, num: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([num, G.z_dim], generator=gen)
    heatmap = generate_heatmap_multi(num, G.img_resolution, **heatmap_spec(num, gen))
    return G.synthesis(G.mapping(z, None), heatmap=heatmap, noise_mode="const"), heatmap


def cam_alignment(D: torch.nn.Module, G: torch.nn.Module, num: int = NUM_CAM, seed: int = 0) -> dict[str, float]:
    """Per level: IoU of D's normalised Grad-CAM and the target heatmap (both > 0.5) and their mean L1 error."""
    img, heatmap = _fakes(G, num, seed)
    c = torch.zeros([num, 0])
    out: dict[str, float] = {}
    for start in range(0, num, 32):
        x = img[start : start + 32]
        weights = gradcam_weights(D, x, c[: len(x)])
        with torch.no_grad():
            _, feats = D(x, c[: len(x)], return_features=[CAM_FEATURES[k] for k in LEVELS])
            for level in LEVELS:
                cam = torch.relu(weights[level] * feats[CAM_FEATURES[level]]).sum(dim=1, keepdim=True)
                cam = torch.nan_to_num(minmax(torch.nn.functional.interpolate(
                    cam, x.shape[-2:], mode="bilinear", align_corners=True)), posinf=1.0)
                target = heatmap[level][start : start + 32]
                if target.shape[1] > 1:
                    target = minmax(target.mean(dim=1, keepdim=True))
                a, b = cam > 0.5, target > 0.5
                iou = ((a & b).sum(dim=(1, 2, 3)) / (a | b).sum(dim=(1, 2, 3)).clamp(min=1)).sum()
                out[f"iou_{level}"] = out.get(f"iou_{level}", 0.0) + float(iou)
                out[f"l1_{level}"] = out.get(f"l1_{level}", 0.0) + float((cam - target).abs().mean(dim=(1, 2, 3)).sum())
    out = {k: v / num for k, v in out.items()}
    out["iou"] = statistics.mean(out[f"iou_{k}"] for k in LEVELS)
    return out


def object_centres(images: torch.Tensor, threshold: float = 0.55) -> torch.Tensor:
    """(y, x) in [-1, 1] of the bright object in each image in [-1, 1]: the centroid of the pixels whose brightest
    channel exceeds ``threshold`` in [0, 1] (shapes: foreground >= 0.55 in two channels, background <= 0.45);
    the image centre when no pixel does."""
    bright = ((images.clamp(-1, 1) + 1) / 2).amax(dim=1) > threshold  # (N, H, W)
    size = images.shape[-1]
    grid = 2 * torch.arange(size, dtype=torch.float32) / (size - 1) - 1
    weight = bright.float()
    total = weight.sum(dim=(1, 2)).clamp(min=1)
    y = (weight * grid[None, :, None]).sum(dim=(1, 2)) / total
    x = (weight * grid[None, None, :]).sum(dim=(1, 2)) / total
    return torch.stack([y, x], dim=1)


def heatmap_tracking(G: torch.nn.Module, num: int = NUM_CAM, seed: int = 7) -> dict[str, float]:
    """Does content follow the heatmap? Pearson r between the level-1 heatmap centre G was given and the detected
    object centre (y and x, averaged), and the mean distance between them (units: half image widths)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([num, G.z_dim], generator=gen)
    spec = heatmap_spec(num, gen)
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, None), heatmap=generate_heatmap_multi(num, G.img_resolution, **spec),
                          noise_mode="const")
    found, given = object_centres(img), spec["centers"]
    r = [float(np.corrcoef(found[:, k].numpy(), given[:, k].numpy())[0, 1]) for k in range(2)]
    return {"r": float(np.nanmean(r)), "r_y": r[0], "r_x": r[1],
            "distance": float((found - given).norm(dim=1).mean())}


def detector_check(dataset_size: int = 2000, resolution: int = 32) -> float:
    """Pearson r (mean of y and x) of :func:`object_centres` against the true centres of 500 real shapes."""
    from common.data.synthetic import shape_factors, shapes

    images, _ = shapes(500, resolution, seed=0)
    found = object_centres(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    truth = torch.from_numpy(shape_factors(500, seed=0)["center"][:, ::-1].copy()).float() * 2 - 1  # (x, y) -> (y, x)
    return float(np.mean([np.corrcoef(found[:, k].numpy(), truth[:, k].numpy())[0, 1] for k in range(2)]))


def run_arm(spec: RunSpec) -> dict[str, Any]:
    """Train one arm with one thread; DI curve, final DI, CAM alignment, proxy-FD, class entropy, times."""
    configure_threads(1)
    cfg = run_config(spec)
    start, cpu_start = time.perf_counter(), time.process_time()
    state = train(cfg, spec.run_dir, method=EqGANSA(), device="cpu")
    train_cpu = time.process_time() - cpu_start
    records = [json.loads(line) for line in (Path(spec.run_dir) / "stats.jsonl").read_text().splitlines()]
    curve = [(round(r["kimg"] * 1000 / cfg.train.batch), r["Metrics/DI"]) for r in records if "Metrics/DI" in r]
    nets = load_networks(spec.run_dir)
    dataset = load_dataset(cfg)
    num = 32 if spec.smoke else NUM_DI
    di = disequilibrium(nets.D, nets.G, dataset, num, torch.device("cpu"))
    cam = cam_alignment(nets.D, nets.G, 32 if spec.smoke else NUM_CAM)
    proxy = build_extractor("proxy")
    fd = fid_from_stats(real_stats(dataset, proxy), fake_stats(nets.G_ema, proxy, 100 if spec.smoke else NUM_FD))
    labelled = type(dataset)(dataset.path, resolution=dataset.resolution, use_labels=True)
    images = torch.from_numpy(np.stack([labelled[i][0] for i in range(len(labelled))])).float() / 127.5 - 1
    labels = np.array([int(np.argmax(labelled.get_label(i))) for i in range(len(labelled))])
    classifier = PixelClassifier(images, labels)
    z = torch.randn([500, nets.G_ema.z_dim], generator=torch.Generator().manual_seed(1))
    samples = torch.from_numpy(generate_images(nets.G_ema, z, None)).float() / 127.5 - 1
    return {
        "spec": dataclasses.asdict(spec),
        "iterations": state.batch_idx,
        "curve": curve,
        "di": di,
        "cam": cam,
        "proxy_fd": fd,
        "class_entropy": class_entropy(classifier.predict(samples), classifier.num_classes),
        "max_class_entropy": float(np.log(classifier.num_classes)),
        "seconds": time.perf_counter() - start,
        "train_cpu_seconds": train_cpu,
        "cpu_seconds": time.process_time() - cpu_start,
    }


def run_sweep(spec: RunSpec) -> dict[str, Any]:
    """A baseline sweep run, plus the CPU cost of 12 iterations of each arm at the same widths (for the budget)."""
    result = run_arm(spec)
    configure_threads(1)
    costs = {}
    for arm in ARMS:
        cfg = replace_cfg(run_config(dataclasses.replace(spec, arm=arm)), train={"kimg_per_tick": 1000})
        train(cfg, f"{spec.run_dir}-timing-{len(costs)}", method=EqGANSA(), device="cpu", max_iterations=2)
        cpu = time.process_time()
        train(cfg, f"{spec.run_dir}-timing-{len(costs)}b", method=EqGANSA(), device="cpu", max_iterations=12)
        costs[arm] = (time.process_time() - cpu) / 12
    return {**result, "cpu_per_iteration": costs}


SWEEP_RULE = (
    "the first configuration in SWEEP order (cheapest first) and the shortest budget of 600 / 800 / 1,000 iterations "
    "at which the baseline at sweep seed 100 (a) has DI >= 1.5 at the budget (mean of the last two ticks), (b) is "
    "still growing (mean DI over the last third of the ticks up to the budget > mean over the middle third), (c) keeps "
    "class entropy >= 0.9 (0.65 ln 4) at 1,000 iterations, and (d) whose 9 report runs fit 22 minutes on 2 one-thread "
    "workers (per-iteration CPU of the three rows measured at those widths, x 3 seeds / 2, + 40 s of measurements "
    "per run)"
)


def rule_checks(result: dict[str, Any], budget: int) -> list[str]:
    """The parts of :data:`SWEEP_RULE` a sweep run fails at ``budget`` iterations (empty: it passes)."""
    values = [d for i, d in result["curve"] if 0 < i <= budget]
    third = max(1, len(values) // 3)
    failed = []
    if statistics.mean(values[-2:]) < 1.5:
        failed.append("DI")
    if statistics.mean(values[-third:]) <= statistics.mean(values[-2 * third : -third] or values[:1]):
        failed.append("growing")
    if result["class_entropy"] < 0.9:
        failed.append("entropy")
    minutes = (sum(result["cpu_per_iteration"].values()) * budget * 3 / 2 + 9 * 40 / 2) / 60
    if minutes > 22:
        failed.append(f"affordable ({minutes:.0f} min)")
    return failed


def run_all(specs: list[RunSpec], workers: int, runner: Any = None) -> tuple[list[dict[str, Any]], float]:
    os.environ.setdefault("GENFORCE_NO_PROGRESS", "1")
    start = time.perf_counter()
    results = []
    click.echo(f"training {len(specs)} runs, {workers} at a time (one thread each)")
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(runner or run_arm, s) for s in sorted(specs, key=lambda s: s.arm == "baseline")]
        for done, future in enumerate(as_completed(futures), start=1):
            r = future.result()
            click.echo(f"[{done}/{len(specs)}] {r['spec']['arm']} seed {r['spec']['seed']}: DI {r['di']['di']:.2f}, "
                       f"CAM IoU {r['cam']['iou']:.3f}, proxy-FD {r['proxy_fd']:.0f}, {r['seconds']:.0f} s "
                       f"({(time.perf_counter() - start) / 60:.1f} min elapsed)")
            results.append(r)
    return results, time.perf_counter() - start


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if len(values) < 2:
        return fmt.format(values[0]) + " (1 seed)"
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def _seeds(values: list[float], fmt: str = "{:.2f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def _by_arm(results: list[dict[str, Any]], arm: str) -> list[dict[str, Any]]:
    return sorted((r for r in results if r["spec"]["arm"] == arm), key=lambda r: r["spec"]["seed"])


def late_di(result: dict[str, Any]) -> float:
    """Mean logged DI over the last third of the ticks (less noisy than one tick)."""
    values = [d for _, d in result["curve"]]
    return statistics.mean(values[-max(1, len(values) // 3):])


def write_report(out: Path, results: list[dict[str, Any]], wall: float, workers: int) -> Path:
    cfg = run_config(RunSpec("baseline", 0, "", results[0]["spec"]["overrides"]))
    report = Report(out, "EqGAN-SA on 32 px shapes: baseline / + SEL / + SEL + L_align")
    seeds = sorted({r["spec"]["seed"] for r in results})
    report.text(
        f"`eqgan/configs/tiny.yaml`: {cfg.data.num_images:,} offline shapes at {cfg.data.resolution} px, G/D channel "
        f"max {cfg.G.channel_max}/{cfg.D.channel_max}, R1 gamma {cfg.loss.r1_gamma:g}, batch {cfg.train.batch}, "
        f"{results[0]['iterations']} iterations, no augmentation / path length / style mixing (as the paper), seeds "
        f"{', '.join(map(str, seeds))}; the regime was chosen by the baseline alone (`--sweep`, README). Wall time "
        f"{wall / 60:.1f} min on {workers} one-thread processes. Command: `make reproduce PAPER=eqgan`."
    )
    report.heading("Disequilibrium indicator DI (primary)")
    report.text(
        f"DI = mean raw D logit on reals - on fakes of the training G (spec §5; lower = closer to equilibrium; the "
        f"paper: Cat 3.64 -> 3.12 -> 2.39). 'final': the last snapshot's D and G on {NUM_DI} reals and {NUM_DI} "
        "fakes; 'late': the logged per-tick DI of the Dmain steps, averaged over the last third of training."
    )
    base = [r["di"]["di"] for r in _by_arm(results, "baseline")]
    rows = []
    for arm in ARMS:
        runs = _by_arm(results, arm)
        final, late = [r["di"]["di"] for r in runs], [late_di(r) for r in runs]
        rows.append([arm, _seeds(final), _spread(final), _seeds(late), _spread(late),
                     _seeds([f / b if abs(b) > 1e-6 else float("nan") for f, b in zip(final, base)])])
    report.table(["row", "final DI per seed", "final DI mean ± sd", "late DI per seed", "late DI mean ± sd",
                  "final / baseline per seed"], rows)
    verdicts = []
    spread = statistics.stdev(base) if len(base) > 1 else float("nan")
    for arm in list(ARMS)[1:]:
        final = [r["di"]["di"] for r in _by_arm(results, arm)]
        lower = sum(f < b for f, b in zip(final, base))
        diff = statistics.mean(f - b for f, b in zip(final, base))
        verdict = ("lower on every seed, by more than the baseline's seed spread" if lower == len(base)
                   and -diff > spread else "no difference beyond seed noise")
        verdicts.append(f"{arm} vs baseline: final DI lower on {lower} of {len(base)} seeds, mean difference "
                        f"{diff:+.2f} (baseline seed sd {spread:.2f}): {verdict}.")
    report.text("\n".join(f"- {v}" for v in verdicts))
    top = max(d for r in results for _, d in r["curve"])
    low = min(0.0, min(d for r in results for _, d in r["curve"]))
    for arm in ARMS:
        series = {f"seed {r['spec']['seed']}": ([i for i, _ in r["curve"]], [d for _, d in r["curve"]])
                  for r in _by_arm(results, arm)}
        slug = arm.replace(" ", "").replace("+", "_").strip("_").lower() or "baseline"
        report.curves(f"di_{slug}.png", series, title=f"DI during training, {arm}", xlabel="iteration",
                      ylabel="DI", ylim=(low, top * 1.05))

    report.heading("Mechanism: D's attention on fakes vs the heatmap G was given")
    report.text(
        f"D's Grad-CAM on {NUM_CAM} fakes of the training G (the loss's CAM: ReLU per channel, summed, upsampled, "
        "min-max normalised) against the heatmap of the same level (level 1 as drawn, levels 2-3 the normalised "
        "mean), both thresholded at 0.5: IoU per level (mean of b8, b16, b32) and the mean L1 error. L_align trains "
        "exactly this agreement; without it the numbers show the chance level."
    )
    rows = []
    for arm in ARMS:
        runs = _by_arm(results, arm)
        rows.append([arm, _seeds([r["cam"]["iou"] for r in runs], "{:.3f}"),
                     _spread([r["cam"]["iou"] for r in runs], "{:.3f}")]
                    + [_spread([r["cam"][f"l1_{k}"] for r in runs], "{:.3f}") for k in LEVELS])
    report.table(["row", "CAM IoU per seed", "CAM IoU mean ± sd", "L1 b8 (4x4)", "L1 b16 (8x8)", "L1 b32 (16x16)"],
                 rows)

    report.heading("Does content follow the heatmap?")
    rows = []
    for arm in ARMS:
        runs = _by_arm(results, arm)
        tracking = [heatmap_tracking(load_networks(r["spec"]["run_dir"]).G_ema) for r in runs]
        rows.append([arm, _seeds([t["r"] for t in tracking]), _spread([t["r"] for t in tracking]),
                     _spread([t["distance"] for t in tracking])])
    report.table(["row", "r(heatmap centre, object centre) per seed", "r mean ± sd", "centre distance mean ± sd"],
                 rows)
    report.text(f"{NUM_CAM} G_ema samples, each with its own heatmap; the object centre is the centroid of the "
                f"bright pixels (max channel > 0.55), a detector that finds the true centres of real shapes with r = "
                f"{detector_check():.3f}; r is the mean of the y and x correlations, distances in half image widths. "
                "The baseline's G ignores its heatmap, so its r is the chance level.")

    report.heading("Sample quality (reported, not claimed)")
    rows = []
    for arm in ARMS:
        runs = _by_arm(results, arm)
        rows.append([arm, _seeds([r["proxy_fd"] for r in runs], "{:.0f}"), _spread([r["proxy_fd"] for r in runs],
                     "{:.0f}"), _seeds([r["class_entropy"] for r in runs]),
                     _seeds([r["train_cpu_seconds"] for r in runs], "{:.0f}")])
    report.table(["row", "proxy-FD per seed", "proxy-FD mean ± sd",
                  f"class entropy per seed (max {results[0]['max_class_entropy']:.2f})", "training CPU s per seed"],
                 rows)
    report.text(f"proxy-FD: Fréchet distance of {NUM_FD:,} G_ema samples to all shapes in the offline proxy-CNN space "
                "(not FID); class entropy of 500 samples under a pixel classifier fitted on the shapes.")
    report.heading("Samples")
    for arm in ARMS:
        run = _by_arm(results, arm)[0]
        G = load_networks(run["spec"]["run_dir"]).G_ema
        img, heatmap = _fakes(G, 16, 123)
        maps = torch.stack([heatmap[k].mean(dim=1) for k in LEVELS]).mean(dim=0)[:, None].expand(-1, 3, -1, -1)
        cells = torch.cat([img, maps * 2 - 1]).mul(127.5).add(128).clamp(0, 255).to(torch.uint8).numpy()
        slug = arm.replace(" ", "").replace("+", "_").strip("_").lower() or "baseline"
        report.image_grid(f"samples_{slug}.png", cells, caption=f"{arm}, seed {run['spec']['seed']}: 16 G_ema "
                          "samples (rows 1-2) and the heatmaps they were given (rows 3-4, mean of the 3 levels)",
                          scale=4, spacing=4, columns=8)
    report.heading("Cost")
    cpu = {arm: statistics.median(r["train_cpu_seconds"] for r in _by_arm(results, arm)) for arm in ARMS}
    report.text("Median training CPU seconds (one thread): " + ", ".join(f"{a} {c:.0f}" for a, c in cpu.items())
                + f"; all runs with their measurements {sum(r['cpu_seconds'] for r in results) / 60:.1f} CPU min.")
    return report.write()


def write_sweep(out: Path, results: list[dict[str, Any]], wall: float) -> Path:
    """The sweep table and the configuration the rule selects."""
    report = Report(out, "EqGAN-SA tiny regime sweep (baseline only, seed 100)")
    report.text(f"Rule, fixed before the sweep and before any EqGAN-SA arm ran: {SWEEP_RULE}. "
                f"Wall {wall / 60:.1f} min.")
    rows, chosen = [], None
    for (label, _), r in zip(SWEEP, sorted(results, key=lambda r: r["spec"]["run_dir"])):
        def at(budget: int, curve: list = r["curve"]) -> float:  # the last logged tick at or before the budget
            return [d for i, d in curve if i <= budget][-1]

        checks = {b: rule_checks(r, b) for b in (600, 800, 1000)}
        passing = [b for b, failed in checks.items() if not failed]
        if passing and chosen is None:
            chosen = (label, passing[0])
        cpu = r["cpu_per_iteration"]
        rows.append([label, " / ".join(f"{at(b):.2f}" for b in (200, 400, 600, 800, 1000)),
                     f"{r['di']['di']:.2f}", f"{r['class_entropy']:.2f}", f"{r['proxy_fd']:.0f}",
                     " / ".join(f"{cpu[a]:.2f}" for a in ARMS),
                     "; ".join(f"{b}: {', '.join(f) or 'passes'}" for b, f in checks.items())])
    report.table(["config", "logged DI at 200/400/600/800/1000 it", "final DI (512 each)", "class entropy",
                  "proxy-FD", "CPU s/it baseline / +SEL / full", "rule at 600 / 800 / 1000 it"], rows)
    report.text(f"Chosen: {chosen[0]} at {chosen[1]} iterations." if chosen else "No configuration passes the rule.")
    for i, ((label, _), r) in enumerate(zip(SWEEP, sorted(results, key=lambda r: r["spec"]["run_dir"]))):
        series = {label: ([it for it, _ in r["curve"]], [d for _, d in r["curve"]])}
        report.curves(f"sweep_di_{i}.png", series, title=f"baseline DI, {label}", xlabel="iteration", ylabel="DI")
    return report.write()


RECORD_KEYS = ("wall_seconds", "workers", "results")  # results.json keys --report-only reads


@click.command()
@reproduce_options("eqgan")
@click.option("--sweep", is_flag=True, help="Tiny: the baseline-only regime sweep (seed 100) instead.")
def main(preset: str, data: str, gpus: int, seeds: list[int], workers: int, smoke: bool, sweep: bool, report_only: bool,
         outdir: str | None) -> None:
    """Reproduce EqGAN-SA's ablation rows on the CPU preset or train one paper row."""
    if preset not in config_names():
        raise click.UsageError(f"unknown PRESET={preset!r}; choose one of {', '.join(config_names())}")
    out = Path(outdir or Path("results") / "eqgan" / (f"{preset}-sweep" if sweep else preset))
    if preset != "tiny":
        paper_row("eqgan", preset, data, gpus, out)
        return
    if report_only:
        record = finished_record(out, RECORD_KEYS)
        click.echo(f"wrote {write_report(out, record['results'], record['wall_seconds'], record['workers'])}")
        return
    out.mkdir(parents=True, exist_ok=True)
    if sweep:
        specs = [RunSpec("baseline", SWEEP_SEED, str(out / "runs" / f"sweep{i}"), overrides, smoke)
                 for i, (_, overrides) in enumerate(SWEEP)]
        results, wall = run_all(specs, workers, run_sweep)
        (out / "sweep.json").write_text(json.dumps({"wall_seconds": wall, "sweep": [label for label, _ in SWEEP],
                                                    "results": results}, indent=1))
        click.echo(f"wrote {write_sweep(out, results, wall)}")
        return
    specs = [RunSpec(arm, seed, str(out / "runs" / f"{arm.replace(' ', '').replace('+', '_')}-seed{seed}"), {},
                     smoke) for arm in ARMS for seed in seeds]
    results, wall = run_all(specs, workers)
    (out / "results.json").write_text(json.dumps({"wall_seconds": wall, "workers": workers, "results": results},
                                                 indent=1))
    click.echo(f"wrote {write_report(out, results, wall, workers)}")


if __name__ == "__main__":
    main()
