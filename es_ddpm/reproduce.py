"""``make reproduce PAPER=es_ddpm``: ES-DDPM vs full and respaced DDPM/DDIM and the priors alone (spec §8).

``--preset tiny`` (offline, CPU, two processes of one thread each):
1. train, side by side, the tiny ADM DDPM (T = 1000, linear) and the priors: the Gaussian-decoder VAE and the tiny
   ``common.stylegan2`` GAN, both on the training split of scikit-learn digits (16 px); 297 digits are held out;
2. sample every row of the table on N images per sampling seed (``--seeds``, default 0,1,2: the prior's draws and
   the diffusion noise; the networks are trained once, as the paper refines one pre-trained DDPM and one batch of
   generator samples per dataset): the priors alone, the full 1000-step DDPM, respaced DDPM and DDIM from noise
   at 25 and 10 NFE, and ES-DDPM from each prior at several T' (DDPM and DDIM, stride 10 and 1), with a counting
   wrapper for NFE; the (seed, half of N) pieces run on the processes;
3. per row and seed: proxy-FD (``common.metrics`` proxy CNN, not an FID) against the held-out digits, and the
   mode-coverage figures of the same CNN's digit classifier (entropy of the predicted-class histogram, ln 10 =
   2.303 for uniform classes, and the mean confidence); mean ± sd over seeds with the per-seed values, wall time,
   sample grids, class histograms, an FD-vs-NFE curve and the DDPM loss curve in ``results/es_ddpm/tiny/report.md``.

``--smoke`` runs the same pipeline with a few iterations, 16 samples and two seeds in one process (seconds, for the
tests).
A paper preset (``--preset lsun_bedroom`` ...) runs ``es_ddpm.sample`` with that row's config (``--data`` = the
generator's npz), under torchrun when ``--gpus`` > 0; FID is then ``python -m common.metrics fid``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import click
import numpy as np
import torch

from common import dist
from common.cli import user_errors
from common.config import load_config, save_config
from common.data import write_image_archive
from common.logging import read_scalars
from common.metrics import ProxyExtractor, fid_from_features, load_proxy
from common.metrics.proxy import ProxyNet, proxy_input
from common.report import Report
from common.stylegan2.rows import parse_seeds
from common.threads import configure_threads
from es_ddpm.config import ESDDPMConfig, build_diffusion, config_path
from es_ddpm.data import dataset_tensor, load_training_data
from es_ddpm.gan import load_gan, train_gan
from es_ddpm.sample import es_sample, load_ddpm, stylegan2_samples
from es_ddpm.train import train_ddpm
from es_ddpm.vae import load_vae, train_vae

PRIOR_SEED, NOISE_SEED, SEED_STRIDE = 1000, 2000, 100  # seed s: PRIOR_SEED + 100 s, ...
DIGIT_LOGITS = slice(4, 14)  # the proxy CNN's ten digit classes (after its four shape classes)


@dataclass(frozen=True)
class Row:
    """One table row: where sampling starts and which chain it walks."""

    method: str
    prior: str  # 'noise', 'vae', 'dcgan', 'stylegan2', or 'data' (real training images, the metric's floor)
    t_prime: int | None  # None: the whole chain from x_T (or no diffusion at all for a prior alone)
    chain: str | None  # None: the prior's samples as they are (NFE 0)
    sampler: str = "ddpm"


TINY_ROWS = (
    Row("training digits (FD floor)", "data", None, None),
    Row("VAE alone", "vae", None, None),
    Row("DCGAN alone", "dcgan", None, None),
    Row("StyleGAN2 alone", "stylegan2", None, None),
    Row("DDPM, full chain", "noise", None, "1000"),
    Row("DDPM respaced", "noise", None, "25"),
    Row("DDIM", "noise", None, "ddim25", "ddim"),
    Row("DDPM respaced", "noise", None, "10"),
    Row("DDIM", "noise", None, "ddim10", "ddim"),
    Row("ES-DDPM", "vae", 100, "100"),
    Row("ES-DDPM", "vae", 200, "100"),
    Row("ES-DDPM", "vae", 300, "100"),
    Row("ES-DDPM", "vae", 200, "1000"),
    Row("ES-DDIM", "vae", 200, "ddim100", "ddim"),
    Row("ES-DDIM", "vae", 300, "ddim100", "ddim"),
    Row("ES-DDPM", "dcgan", 50, "100"),
    Row("ES-DDPM", "dcgan", 100, "100"),
    Row("ES-DDPM", "dcgan", 200, "100"),
    Row("ES-DDPM", "dcgan", 300, "100"),
    Row("ES-DDPM", "dcgan", 100, "1000"),
    Row("ES-DDIM", "dcgan", 100, "ddim100", "ddim"),
    Row("ES-DDIM", "dcgan", 300, "ddim100", "ddim"),
    Row("ES-DDPM", "stylegan2", 100, "100"),
    Row("ES-DDPM", "stylegan2", 200, "100"),
)
PRIOR_NAMES = {"noise": "N(0, I)", "vae": "VAE", "dcgan": "DCGAN", "stylegan2": "StyleGAN2", "data": "data"}


def _row_key(row: Row) -> str:
    return f"{row.method}|{row.prior}|{row.t_prime}|{row.chain}"


def _smoke_cfg(cfg: ESDDPMConfig) -> ESDDPMConfig:
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, iterations=3, batch=16, warmup_steps=0, log_every=1, snapshot_every=3),
        vae=dataclasses.replace(cfg.vae, iterations=3, batch=16),
        gan=dataclasses.replace(cfg.gan, iterations=3, batch=16),
        sample=dataclasses.replace(cfg.sample, num_samples=16),
    )


def _train_stylegan2(cfg: ESDDPMConfig, work: Path, smoke: bool) -> Path:
    """The tiny common.stylegan2 generator on the same training split (the held-out digits stay unseen)."""
    from common.stylegan2.config import StyleGAN2Config, preset_path
    from common.stylegan2.training import replace_cfg
    from common.stylegan2.training import train as train_stylegan2

    train_split = load_training_data(cfg.data, "train", cfg.seed)
    archive = work / "digits-train.zip"
    if not archive.exists():
        write_image_archive(archive, dataset_tensor(train_split).permute(0, 2, 3, 1).numpy(), None)
    gan_cfg = load_config(StyleGAN2Config, preset_path("tiny"))
    train_values = {"metrics": [], "snap_ticks": 1000}
    if smoke:
        train_values.update(total_kimg=0.064, kimg_per_tick=0.032)
    gan_cfg = replace_cfg(gan_cfg, data={"source": "path", "path": str(archive), "workers": 0}, train=train_values)
    gan_dir = work / "gan"
    gan_dir.mkdir(parents=True, exist_ok=True)
    save_config(gan_cfg, gan_dir / "config.yaml")
    train_stylegan2(gan_cfg, gan_dir)
    return max(gan_dir.glob("snapshot-*.pt"))


def _stage_train(part: str, cfg: ESDDPMConfig, work: Path, smoke: bool) -> dict[str, object]:
    """One training process: 'ddpm', or 'priors' (VAE, DCGAN, StyleGAN2). Returns wall times, any StyleGAN2 failure."""
    configure_threads()
    start = time.perf_counter()
    if part == "ddpm":
        train_ddpm(cfg, work / "ddpm")
        return {"ddpm_seconds": time.perf_counter() - start}
    train_vae(cfg, work / "vae")
    vae_seconds = time.perf_counter() - start
    train_gan(cfg, work / "dcgan")
    dcgan_seconds = time.perf_counter() - start - vae_seconds
    try:
        gan = str(_train_stylegan2(cfg, work, smoke))
        error = None
    except Exception as err:  # noqa: BLE001 - the report states that the StyleGAN2 prior did not run, and why
        gan, error = None, f"{type(err).__name__}: {err}"
    return {"vae_seconds": vae_seconds, "dcgan_seconds": dcgan_seconds,
            "gan_seconds": time.perf_counter() - start - vae_seconds - dcgan_seconds, "gan": gan, "gan_error": error}


def _prior(row: Row, cfg: ESDDPMConfig, work: Path, gan: str | None, num: int, seed: int) -> torch.Tensor:
    """The N starting points of a row in [-1, 1], the same for every row with that prior and sampling seed."""
    generator = torch.Generator().manual_seed(PRIOR_SEED + SEED_STRIDE * seed)
    shape = (num, cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    if row.prior == "noise":
        return torch.randn(shape, generator=generator)
    if row.prior == "vae":
        return load_vae(work / "vae", cfg).sample(num, generator)
    if row.prior == "dcgan":
        return load_gan(work / "dcgan", cfg).sample(num, generator)
    if row.prior == "stylegan2":
        return stylegan2_samples(gan, num, generator, "cpu")
    data = dataset_tensor(load_training_data(cfg.data, "train", cfg.seed))
    index = torch.randperm(len(data), generator=generator)[:num]
    return data[index].to(torch.float32) / 127.5 - 1


def _stage_sample(seed: int, shard: int, shards: int, cfg: ESDDPMConfig, work: Path, rows: tuple[Row, ...],
                  gan: str | None) -> tuple[int, dict[str, dict[str, object]]]:
    """Sample this process's half of N for every row at one sampling seed: uint8 images, NFE, seconds, statistics."""
    configure_threads()
    model = load_ddpm(work / "ddpm", cfg)
    num = cfg.sample.num_samples
    piece = slice(shard * num // shards, (shard + 1) * num // shards)
    out = {}
    for row in rows:
        if row.prior == "stylegan2" and gan is None:
            continue
        start = time.perf_counter()
        x = _prior(row, cfg, work, gan, num, seed)[piece]
        if row.chain is None:
            images = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            out[_row_key(row)] = {"images": images, "nfe": 0, "seconds": time.perf_counter() - start, "stats": {}}
            continue
        diffusion = build_diffusion(cfg.diffusion, cfg.model.learn_sigma, row.chain)
        generator = torch.Generator().manual_seed(NOISE_SEED + SEED_STRIDE * seed + shard)
        result = es_sample(model, diffusion, x, row.t_prime, row.sampler, 0.0, len(x), generator)
        out[_row_key(row)] = {"images": result.images, "nfe": result.nfe, "stats": result.stats,
                              "seconds": time.perf_counter() - start}
    return seed, out


def _parallel(calls: list[tuple], processes: int) -> list:
    """Run ``(fn, *args)`` calls in separate spawned processes (one core each), or inline with ``processes=1``."""
    if processes == 1:
        return [fn(*args) for fn, *args in calls]
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, *args) for fn, *args in calls]
        return [f.result() for f in futures]


def run_tiny(outdir: Path, work: Path, smoke: bool, processes: int, seeds: list[int]) -> Path:
    """The whole tiny reproduction; returns the report path."""
    start = time.perf_counter()
    cfg = load_config(ESDDPMConfig, config_path("tiny"))
    if smoke:
        cfg = _smoke_cfg(cfg)
    work.mkdir(parents=True, exist_ok=True)
    save_config(cfg, work / "config.yaml")
    load_proxy()  # train/cache the proxy CNN once, before the processes that need it
    trained = _parallel([(_stage_train, "ddpm", cfg, work, smoke), (_stage_train, "priors", cfg, work, smoke)],
                        processes)
    train_info = {**trained[0], **trained[1]}
    shards = 1 if smoke else 2
    sampled = _parallel([(_stage_sample, seed, i, shards, cfg, work, TINY_ROWS, train_info["gan"])
                         for seed in seeds for i in range(shards)], processes)
    net = load_proxy()
    extractor = ProxyExtractor(net)
    reference = extractor.extract(dataset_tensor(load_training_data(cfg.data, "holdout", cfg.seed))).numpy()
    results: dict[str, dict[str, object]] = {}
    for seed in seeds:
        for key, value in _merge([part for s, part in sampled if s == seed]).items():
            row = results.setdefault(key, {"nfe": value["nfe"], "stats": value["stats"], "seeds": [],
                                           "images": value["images"], "seconds": value["seconds"]})
            row["seeds"].append({"seed": seed, **sample_metrics(value["images"], net, extractor, reference)})
    data_shares = {s["seed"]: s["shares"] for s in results.get(_row_key(TINY_ROWS[0]), {"seeds": []})["seeds"]}
    for row in results.values():
        for entry in row["seeds"]:  # class-share distance to the real digits drawn at the same seed
            entry["class_tv"] = 0.5 * float(np.abs(np.subtract(entry["shares"], data_shares[entry["seed"]])).sum())
        for name in ("fd", "entropy", "confidence", "class_tv"):
            row[name] = [float(s[name]) for s in row["seeds"]]
    train_info["total_seconds"] = time.perf_counter() - start
    return write_report(outdir, cfg, results, train_info, work, smoke, seeds)


def sample_metrics(images: torch.Tensor, net: ProxyNet, extractor: ProxyExtractor,
                   reference: np.ndarray) -> dict[str, object]:
    """proxy-FD against ``reference`` and mode coverage: the proxy CNN's digit classes (its logits 4..13) give the
    predicted-class shares, their entropy in nats (ln 10 = 2.303 when every digit is equally frequent) and the mean
    max-softmax confidence."""
    with torch.no_grad():
        logits = net.classify(proxy_input(images))[:, DIGIT_LOGITS]
    probs = logits.softmax(dim=1)
    shares = torch.bincount(probs.argmax(dim=1), minlength=10).double() / len(images)
    nonzero = shares[shares > 0]
    return {"fd": fid_from_features(extractor.extract(images).numpy(), reference),
            "entropy": float(-(nonzero * nonzero.log()).sum()), "confidence": float(probs.max(dim=1).values.mean()),
            "shares": shares.tolist()}


def _merge(sampled: list[dict[str, dict[str, object]]]) -> dict[str, dict[str, object]]:
    merged: dict[str, dict[str, object]] = {}
    for part in sampled:
        for key, value in part.items():
            if key not in merged:
                merged[key] = dict(value)
            else:
                merged[key]["images"] = torch.cat([merged[key]["images"], value["images"]])
                merged[key]["seconds"] = max(merged[key]["seconds"], value["seconds"])
    return merged


def _label(row: Row) -> str:
    if row.chain is None:
        return row.method
    return f"{row.method} from {PRIOR_NAMES[row.prior]}"


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def _spread(values: list[float], digits: int = 1) -> str:
    """'36.1 ± 1.2' (sample sd over seeds; a single seed shows its value alone)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def write_report(outdir: Path, cfg: ESDDPMConfig, results: dict[str, dict[str, object]], info: dict[str, object],
                 work: Path, smoke: bool, seeds: list[int]) -> Path:
    """report.md: the table first, then what the numbers show, setup, sample grids, class shares and curves."""
    n = cfg.sample.num_samples
    report = Report(outdir, "ES-DDPM tiny reproduction" + (" (smoke run: numbers are meaningless)" if smoke else ""))
    rows, table = [], []
    for row in TINY_ROWS:
        result = results.get(_row_key(row))
        if result is None:
            continue
        rows.append((row, result))
        stats = result["stats"]
        table.append([
            _label(row), row.t_prime if row.t_prime is not None else "—", row.chain or "—", result["nfe"],
            stats.get("effective_t_prime", "—"), f"{stats['alpha_bar']:.4f}" if stats else "—",
            _spread(result["fd"]), " / ".join(f"{v:.1f}" for v in result["fd"]), _spread(result["entropy"], 3),
            _spread(result["class_tv"], 3), _spread(result["confidence"], 3), float(result["seconds"]),
        ])
    report.heading("Results")
    report.text(f"Mean ± sd over sampling seeds {', '.join(map(str, seeds))} (N = {n} samples per seed); per-seed "
                "proxy-FD in seed order. Class entropy and confidence: the proxy CNN's digit classifier on the samples "
                "(ln 10 = 2.303 if all ten digits are equally frequent); class TV: total-variation distance between "
                "the predicted-class shares and those of the real digits drawn at the same seed (0 = same class "
                "mix, 1 = disjoint). Wall s: seed "
                f"{seeds[0]}, one process's half of N.")
    report.table(["row", "T'", "chain", "NFE", "effective T'", "ᾱ_T'", "proxy-FD ↓", "per seed",
                  "class entropy", "class TV ↓", "confidence", "wall s"], table)
    report.heading("What the numbers show")
    report.text("\n".join(f"- {line}" for line in conclusions(rows)))
    report.heading("Setup")
    report.text(
        f"scikit-learn digits at {cfg.model.image_size} px, {cfg.data.holdout} held out. DDPM: the package's ADM UNet "
        f"({cfg.model.num_channels} channels, mult {cfg.model.channel_mult}, {cfg.model.num_res_blocks} res block(s), "
        f"GroupNorm {cfg.model.norm_groups}), linear schedule, T = {cfg.diffusion.diffusion_steps}, fixed-large "
        f"variance, {cfg.train.iterations} iterations of batch {cfg.train.batch}. VAE prior: z = {cfg.vae.z_dim}, "
        f"decoder σ² from the ES-DDPM bound at T' = {cfg.vae.t_prime}, {cfg.vae.iterations} iterations. GAN priors: "
        f"the package's DCGAN ({cfg.gan.iterations} iterations) and the tiny common.stylegan2 generator (its "
        "preset, 20 kimg), both on the same training split. The networks are trained once (seed "
        f"{cfg.seed}), as the paper refines one pre-trained DDPM and one generator batch per dataset; the sampling "
        "seeds change the prior's draws and all diffusion noise, so the spread is that of sampling and of the metric "
        "at this N, not of training. Every row of a prior starts from the same prior samples at a given seed. "
        f"proxy-FD: the project's offline proxy CNN (not an FID) against the {cfg.data.holdout} held-out digits; NFE "
        "counted by a wrapper around the UNet (per sample). "
        f"Training wall time: DDPM {info['ddpm_seconds']:.0f} s, VAE {info['vae_seconds']:.0f} s, DCGAN "
        f"{info['dcgan_seconds']:.0f} s, StyleGAN2 {info['gan_seconds']:.0f} s (the DDPM in parallel with the priors); "
        f"whole run {info['total_seconds']:.0f} s."
    )
    if info.get("gan_error"):
        report.text(f"**The StyleGAN2 prior did not train** ({info['gan_error']}); its rows are missing.")
    report.heading("Samples")
    report.text(f"First 64 samples of seed {seeds[0]}, upscaled 4x.")
    grid = {"scale": 4, "spacing": 2}
    report.image_grid("samples_data.png", _first(results, TINY_ROWS[0]), "held-in training digits", **grid)
    for row in TINY_ROWS[1:5]:
        if _row_key(row) in results:
            name = f"samples_{row.prior}_{(row.chain or 'alone').replace(',', '_')}.png"
            report.image_grid(name, _first(results, row), _label(row), **grid)
    best = _best_es(rows)
    for prior, (row, _) in best.items():
        report.image_grid(f"samples_es_{prior}.png", _first(results, row),
                          f"best ES row from the {PRIOR_NAMES[prior]}: {_label(row)}, T' = {row.t_prime}, "
                          f"chain {row.chain}", **grid)
    report.heading("Mode coverage")
    report.curves("class_shares.png", _share_series(rows, best), title="predicted digit class share (mean over seeds)",
                  xlabel="digit", ylabel="share of samples")
    report.text("Each prior alone beside its best ES row and the real digits: a prior that misses digits keeps missing "
                "them after ES-DDPM when its entropy stays low.")
    report.heading("Proxy-FD vs NFE")
    report.curves("fd_vs_nfe.png", _fd_series(rows), title="proxy-FD vs NFE (log10, mean over seeds)",
                  xlabel="log10 NFE", ylabel="proxy-FD")
    report.text("Priors alone are drawn at NFE = 1 (one generator forward, no UNet call) on this axis.")
    stats_path = work / "ddpm" / "stats.jsonl"
    if stats_path.exists():
        records = read_scalars(stats_path)
        report.heading("DDPM training loss")
        report.curves("ddpm_loss.png", {"L_simple": ([r["step"] for r in records], [r["mse"] for r in records])},
                      title="DDPM training loss", xlabel="iteration", ylabel="MSE")
    (outdir / "results.json").write_text(json.dumps(
        [{"row": _label(r), "t_prime": r.t_prime, "chain": r.chain, "nfe": res["nfe"], "fd": _mean(res["fd"]),
          "seeds": res["seeds"], "seconds": res["seconds"], **dict(res["stats"].items())} for r, res in rows],
        indent=1))
    return report.write()


def _first(results: dict[str, dict[str, object]], row: Row, count: int = 64) -> np.ndarray:
    return results[_row_key(row)]["images"][:count].numpy()


def _best_es(rows: list[tuple[Row, dict[str, object]]]) -> dict[str, tuple[Row, dict[str, object]]]:
    """The ES row of lowest mean proxy-FD per prior."""
    best: dict[str, tuple[Row, dict[str, object]]] = {}
    for row, result in rows:
        if row.t_prime is not None and (row.prior not in best
                                        or _mean(result["fd"]) < _mean(best[row.prior][1]["fd"])):
            best[row.prior] = (row, result)
    return best


def _share_series(rows: list[tuple[Row, dict[str, object]]],
                  best: dict[str, tuple[Row, dict[str, object]]]) -> dict[str, tuple[list[int], list[float]]]:
    chosen = [(r, res) for r, res in rows if r.chain is None]
    chosen += [best[r.prior] for r, _ in chosen if r.prior in best]
    return {_label(r) + (f" (T' {r.t_prime})" if r.t_prime else ""):
            (list(range(10)), np.mean([s["shares"] for s in res["seeds"]], axis=0).tolist()) for r, res in chosen}


def _fd_series(rows: list[tuple[Row, dict[str, object]]]) -> dict[str, tuple[list[float], list[float]]]:
    groups: dict[str, list[tuple[int, float]]] = {}
    for row, result in rows:
        if row.prior == "data":
            continue
        name = f"{row.sampler.upper()} from {PRIOR_NAMES[row.prior]}"
        groups.setdefault(name if row.chain else f"{PRIOR_NAMES[row.prior]} alone", []).append(
            (max(int(result["nfe"]), 1), _mean(result["fd"])))
    return {name: ([math.log10(n) for n, _ in sorted(pts)], [fd for _, fd in sorted(pts)])
            for name, pts in groups.items()}


def _versus(a: list[float], b: list[float]) -> str:
    """'lower on 3/3 seeds': how many paired seeds have a < b."""
    wins = sum(x < y for x, y in zip(a, b))
    return f"lower on {wins}/{len(a)} seeds"


def _coverage(rows: list[tuple[Row, dict[str, object]]]) -> list[str]:
    """Mode coverage per prior: class entropy, class-share distance to the data and the rarest digit's share, for the
    prior alone and its best ES row (the paper: global structure, e.g. which modes exist, comes from the prior)."""
    data = next((res for r, res in rows if r.prior == "data"), None)
    if data is None or "class_tv" not in data:
        return []
    data_shares = np.mean([s["shares"] for s in data["seeds"]], axis=0)
    lines = []
    for prior, (row, result) in _best_es(rows).items():
        alone = next((res for r, res in rows if r.prior == prior and r.chain is None), None)
        if alone is None:
            continue
        shares_alone = np.mean([s["shares"] for s in alone["seeds"]], axis=0)
        shares_es = np.mean([s["shares"] for s in result["seeds"]], axis=0)
        rare = int(shares_alone.argmin())
        lines.append(
            f"Mode coverage, {PRIOR_NAMES[prior]}: class entropy {_spread(alone['entropy'], 2)} alone, "
            f"{_spread(result['entropy'], 2)} after ES (T' = {row.t_prime}), real digits "
            f"{_spread(data['entropy'], 2)}; "
            f"class TV to the real digits {_spread(alone['class_tv'], 3)} -> {_spread(result['class_tv'], 3)} "
            f"({_versus(result['class_tv'], alone['class_tv'])}); its rarest digit {rare}: share "
            f"{shares_alone[rare]:.2f} -> {shares_es[rare]:.2f} (real {data_shares[rare]:.2f}).")
    return lines


def conclusions(rows: list[tuple[Row, dict[str, object]]]) -> list[str]:
    """Plain statements comparing the measured rows (means over seeds, with paired per-seed counts): best ES row per
    prior vs its prior, the full DDPM and equal-budget samplers from noise; mode coverage; respacing; DDIM."""
    by_key = {_row_key(r): (r, res) for r, res in rows}
    full = by_key.get(_row_key(TINY_ROWS[4]))
    lines = []
    for prior, (row, result) in _best_es(rows).items():
        alone = next((res for r, res in rows if r.prior == prior and r.chain is None), None)
        fd, nfe = result["fd"], int(result["nfe"])
        name = PRIOR_NAMES[prior]
        head = f"ES-{row.sampler.upper()} from the {name} (T' = {row.t_prime}, chain {row.chain}, NFE {nfe})"
        if alone is not None:
            ratio = _mean(fd) / _mean(alone["fd"])
            wins = sum(x < y for x, y in zip(fd, alone["fd"]))
            effect = ("improves" if ratio < 0.9 and wins == len(fd) else
                      "worsens" if ratio > 1.1 and wins == 0 else "hardly changes")
            lines.append(f"{head} reaches proxy-FD {_spread(fd)} vs {_spread(alone['fd'])} for the {name} alone "
                         f"({ratio:.2f}x, {_versus(fd, alone['fd'])}): diffuse-then-denoise {effect} the prior.")
        if full is not None:
            full_fd, full_nfe = full[1]["fd"], int(full[1]["nfe"])
            verdict = "beats" if _mean(fd) < _mean(full_fd) else "does not beat"
            lines.append(f"It {verdict} the full {full_nfe}-step DDPM ({_spread(full_fd)}) with "
                         f"{full_nfe / nfe:.0f}x fewer NFE (ratio {_mean(fd) / _mean(full_fd):.2f}, "
                         f"{_versus(fd, full_fd)}).")
        same = [(r, res) for r, res in rows if r.prior == "noise" and int(res["nfe"]) <= nfe and r.chain != "1000"]
        if same:
            r_best, res_best = min(same, key=lambda item: _mean(item[1]["fd"]))
            verdict = "beats" if _mean(fd) < _mean(res_best["fd"]) else "does not beat"
            lines.append(f"At equal or lower budget it {verdict} the best sampler from noise ({_label(r_best)}, "
                         f"{r_best.chain}, NFE {res_best['nfe']}: {_spread(res_best['fd'])}; "
                         f"{_versus(fd, res_best['fd'])}).")
    lines += _coverage(rows)
    strides = [(r, res) for r, res in rows if r.prior == "vae" and r.t_prime == 200 and r.sampler == "ddpm"]
    if len(strides) == 2:
        (_, ra), (_, rb) = strides
        lines.append(f"Orthogonality to respacing (VAE, T' = 200): NFE {ra['nfe']} gives {_spread(ra['fd'])}, "
                     f"NFE {rb['nfe']} gives {_spread(rb['fd'])}.")
    pairs = [(r, res) for r, res in rows if r.sampler == "ddim" and r.t_prime is not None]
    for r, res in pairs:
        twin = by_key.get(_row_key(Row("ES-DDPM", r.prior, r.t_prime, r.chain.removeprefix("ddim"))))
        if twin is not None:
            lines.append(f"{PRIOR_NAMES[r.prior]}, T' = {r.t_prime}, NFE {res['nfe']}: ancestral "
                         f"{_spread(twin[1]['fd'])} vs DDIM {_spread(res['fd'])} "
                         f"(DDIM {_versus(res['fd'], twin[1]['fd'])}).")
    return lines or ["no ES rows ran"]


def run_paper_preset(preset: str, data: str, gpus: int) -> int:
    """Sample one paper row with es_ddpm.sample (torchrun on ``gpus`` processes when > 0)."""
    args = ["--cfg", str(config_path(preset)), "--outdir", f"results/es_ddpm/{preset}"]
    if data:
        args += ["--set", f"sample.prior.path={data}"]
    argv = dist.torchrun_command("es_ddpm.sample", args, gpus) if gpus > 0 else [sys.executable, "-m",
                                                                                  "es_ddpm.sample", *args]
    click.echo(" ".join(argv))
    return subprocess.call(argv)


@click.command()
@click.option("--preset", default="tiny", show_default=True, help="tiny, or a config row (configs/<preset>.yaml).")
@click.option("--data", default="", help="Paper presets: the generator's npz (sample.prior.path).")
@click.option("--gpus", default=0, type=int, show_default=True, help="Paper presets: torchrun processes.")
@click.option("--smoke", is_flag=True, help="A few iterations and 16 samples, in one process (seconds).")
@click.option("--outdir", default=None, help="Report folder [results/es_ddpm/<preset>].")
@click.option("--workdir", default=None, help="Checkpoints and caches [runs/es_ddpm/reproduce-<preset>].")
@click.option("--processes", default=2, show_default=True, type=click.IntRange(min=1),
              help="Tiny preset: parallel processes.")
@click.option("--seeds", default="0,1,2", show_default=True, callback=parse_seeds,
              help="Tiny preset: sampling seeds (prior draws and diffusion noise).")
def main(preset: str, data: str, gpus: int, smoke: bool, outdir: str | None, workdir: str | None,
         processes: int, seeds: list[int]) -> None:
    """Reproduce ES-DDPM: the tiny CPU comparison, or one paper row's sampling."""
    if preset != "tiny":
        with user_errors():
            if not config_path(preset).is_file():
                raise click.ClickException(f"unknown preset {preset!r}: no es_ddpm/configs/{preset}.yaml")
        sys.exit(run_paper_preset(preset, data, gpus))
    out = Path(outdir or "results/es_ddpm/tiny")
    work = Path(workdir or ("runs/es_ddpm/reproduce-tiny" + ("-smoke" if smoke else "")))
    with user_errors():
        path = run_tiny(out, work / time.strftime("%Y%m%d-%H%M%S"), smoke, 1 if smoke else processes,
                        seeds[:2] if smoke else seeds)
    click.echo(f"done: {path}")


if __name__ == "__main__":
    main()
