"""``make reproduce PAPER=es_ddpm``: ES-DDPM vs full and respaced DDPM/DDIM and the priors alone (spec §8).

``--preset tiny`` (offline, CPU, two processes of one thread each):
1. train, side by side, the tiny ADM DDPM (T = 1000, linear) and the priors: the Gaussian-decoder VAE and the tiny
   ``common.stylegan2`` GAN, both on the training split of scikit-learn digits (16 px); 297 digits are held out;
2. sample every row of the table on N images (each process half of them): the priors alone, the full 1000-step
   DDPM, respaced DDPM and DDIM from noise at 25 and 10 NFE, and ES-DDPM from each prior at several T'
   (DDPM and DDIM, stride 10 and 1), every row with fixed seeds and a counting wrapper for NFE;
3. proxy-FD (``common.metrics`` proxy CNN, not an FID) of each row against the held-out digits, wall time,
   sample grids, an FD-vs-NFE curve and the DDPM loss curve in ``results/es_ddpm/tiny/report.md``.

``--smoke`` runs the same pipeline with a few iterations and 16 samples in one process (seconds, for the tests).
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
from common.report import Report
from common.threads import configure_threads
from es_ddpm.config import ESDDPMConfig, build_diffusion, config_path
from es_ddpm.data import dataset_tensor, load_training_data
from es_ddpm.gan import load_gan, train_gan
from es_ddpm.sample import es_sample, load_ddpm, stylegan2_samples
from es_ddpm.train import train_ddpm
from es_ddpm.vae import load_vae, train_vae

PRIOR_SEED, NOISE_SEED = 1000, 2000


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


def _prior(row: Row, cfg: ESDDPMConfig, work: Path, gan: str | None, num: int) -> torch.Tensor:
    """The N starting points of a row in [-1, 1], the same for every row with that prior (fixed seed)."""
    generator = torch.Generator().manual_seed(PRIOR_SEED)
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


def _stage_sample(shard: int, shards: int, cfg: ESDDPMConfig, work: Path, rows: tuple[Row, ...],
                  gan: str | None) -> dict[str, dict[str, object]]:
    """Sample this process's slice of N for every row: uint8 images, NFE, seconds and the early-stop statistics."""
    configure_threads()
    model = load_ddpm(work / "ddpm", cfg)
    num = cfg.sample.num_samples
    piece = slice(shard * num // shards, (shard + 1) * num // shards)
    out = {}
    for row in rows:
        if row.prior == "stylegan2" and gan is None:
            continue
        start = time.perf_counter()
        x = _prior(row, cfg, work, gan, num)[piece]
        if row.chain is None:
            images = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            out[_row_key(row)] = {"images": images, "nfe": 0, "seconds": time.perf_counter() - start, "stats": {}}
            continue
        diffusion = build_diffusion(cfg.diffusion, cfg.model.learn_sigma, row.chain)
        generator = torch.Generator().manual_seed(NOISE_SEED + shard)
        result = es_sample(model, diffusion, x, row.t_prime, row.sampler, 0.0, len(x), generator)
        out[_row_key(row)] = {"images": result.images, "nfe": result.nfe, "stats": result.stats,
                              "seconds": time.perf_counter() - start}
    return out


def _parallel(calls: list[tuple], processes: int) -> list:
    """Run ``(fn, *args)`` calls in separate spawned processes (one core each), or inline with ``processes=1``."""
    if processes == 1:
        return [fn(*args) for fn, *args in calls]
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, *args) for fn, *args in calls]
        return [f.result() for f in futures]


def run_tiny(outdir: Path, work: Path, smoke: bool, processes: int) -> Path:
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
    sampled = _parallel([(_stage_sample, i, processes, cfg, work, TINY_ROWS, train_info["gan"])
                         for i in range(processes)], processes)
    results = _merge(sampled)
    extractor = ProxyExtractor(load_proxy())
    reference = extractor.extract(dataset_tensor(load_training_data(cfg.data, "holdout", cfg.seed))).numpy()
    for result in results.values():
        result["fd"] = fid_from_features(extractor.extract(result["images"]).numpy(), reference)
    train_info["total_seconds"] = time.perf_counter() - start
    return write_report(outdir, cfg, results, train_info, work, smoke)


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


def write_report(outdir: Path, cfg: ESDDPMConfig, results: dict[str, dict[str, object]], info: dict[str, object],
                 work: Path, smoke: bool) -> Path:
    """report.md: setup, table, conclusions drawn from the numbers, sample grids, FD-vs-NFE and loss curves."""
    n = cfg.sample.num_samples
    report = Report(outdir, "ES-DDPM tiny reproduction" + (" (smoke run: numbers are meaningless)" if smoke else ""))
    report.heading("Setup")
    report.text(
        f"scikit-learn digits at {cfg.model.image_size} px, {cfg.data.holdout} held out. DDPM: the package's ADM UNet "
        f"({cfg.model.num_channels} channels, mult {cfg.model.channel_mult}, {cfg.model.num_res_blocks} res block(s), "
        f"GroupNorm {cfg.model.norm_groups}), linear schedule, T = {cfg.diffusion.diffusion_steps}, fixed-large "
        f"variance, {cfg.train.iterations} iterations of batch {cfg.train.batch}. VAE prior: z = {cfg.vae.z_dim}, "
        f"decoder σ² from the ES-DDPM bound at T' = {cfg.vae.t_prime}, {cfg.vae.iterations} iterations. GAN priors: "
        f"the package's DCGAN ({cfg.gan.iterations} iterations) and the tiny common.stylegan2 generator (its "
        f"preset, 20 kimg), both on the same training split. Every row: N = {n} samples with the same "
        "seeds (same prior samples for every row of a prior); proxy-FD (the project's offline proxy CNN, not an FID) "
        f"against the {cfg.data.holdout} held-out digits; NFE counted by a wrapper around the UNet (per sample). "
        f"Training wall time: DDPM {info['ddpm_seconds']:.0f} s, VAE {info['vae_seconds']:.0f} s, DCGAN "
        f"{info['dcgan_seconds']:.0f} s, StyleGAN2 {info['gan_seconds']:.0f} s (the DDPM in parallel with the priors); "
        f"whole run {info['total_seconds']:.0f} s."
    )
    if info.get("gan_error"):
        report.text(f"**The StyleGAN2 prior did not train** ({info['gan_error']}); its rows are missing.")
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
            float(result["fd"]), float(result["seconds"]),
        ])
    report.heading("Results")
    report.table(["row", "T'", "chain", "NFE", "effective T'", "ᾱ_T'", "proxy-FD ↓", "wall s"],
                 table)
    report.heading("What the numbers show")
    report.text("\n".join(f"- {line}" for line in conclusions(rows)))
    report.heading("Samples")
    report.image_grid("samples_data.png", _first(results, TINY_ROWS[0]), "held-in training digits", scale=4)
    for row in TINY_ROWS[1:5]:
        if _row_key(row) in results:
            name = f"samples_{row.prior}_{(row.chain or 'alone').replace(',', '_')}.png"
            report.image_grid(name, _first(results, row), _label(row), scale=4)
    best = _best_es(rows)
    for prior, (row, _) in best.items():
        report.image_grid(f"samples_es_{prior}.png", _first(results, row),
                          f"best ES row from the {PRIOR_NAMES[prior]}: {_label(row)}, T' = {row.t_prime}, "
                          f"chain {row.chain}",
                          scale=4)
    report.heading("Proxy-FD vs NFE")
    report.curves("fd_vs_nfe.png", _fd_series(rows), title="proxy-FD vs NFE (log10)", xlabel="log10 NFE",
                  ylabel="proxy-FD")
    report.text("Priors alone are drawn at NFE = 1 (one generator forward, no UNet call) on this axis.")
    stats_path = work / "ddpm" / "stats.jsonl"
    if stats_path.exists():
        records = read_scalars(stats_path)
        report.heading("DDPM training loss")
        report.curves("ddpm_loss.png", {"L_simple": ([r["step"] for r in records], [r["mse"] for r in records])},
                      title="DDPM training loss", xlabel="iteration", ylabel="MSE")
    (outdir / "results.json").write_text(json.dumps(
        [{"row": _label(r), "t_prime": r.t_prime, "chain": r.chain, "nfe": res["nfe"], "fd": res["fd"],
          "seconds": res["seconds"], **{k: v for k, v in res["stats"].items()}} for r, res in rows], indent=1))
    return report.write()


def _first(results: dict[str, dict[str, object]], row: Row, count: int = 64) -> np.ndarray:
    return results[_row_key(row)]["images"][:count].numpy()


def _best_es(rows: list[tuple[Row, dict[str, object]]]) -> dict[str, tuple[Row, dict[str, object]]]:
    best: dict[str, tuple[Row, dict[str, object]]] = {}
    for row, result in rows:
        if row.t_prime is not None and (row.prior not in best or result["fd"] < best[row.prior][1]["fd"]):
            best[row.prior] = (row, result)
    return best


def _fd_series(rows: list[tuple[Row, dict[str, object]]]) -> dict[str, tuple[list[float], list[float]]]:
    groups: dict[str, list[tuple[int, float]]] = {}
    for row, result in rows:
        if row.prior == "data":
            continue
        name = f"{row.sampler.upper()} from {PRIOR_NAMES[row.prior]}"
        groups.setdefault(name if row.chain else f"{PRIOR_NAMES[row.prior]} alone", []).append(
            (max(int(result["nfe"]), 1), float(result["fd"])))
    return {name: ([math.log10(n) for n, _ in sorted(pts)], [fd for _, fd in sorted(pts)])
            for name, pts in groups.items()}


def conclusions(rows: list[tuple[Row, dict[str, object]]]) -> list[str]:
    """Plain statements comparing the measured rows: best ES row per prior vs its prior, the full DDPM, equal NFE."""
    by_key = {_row_key(r): (r, res) for r, res in rows}
    full = by_key.get(_row_key(TINY_ROWS[4]))
    lines = []
    for prior, (row, result) in _best_es(rows).items():
        alone = next((res for r, res in rows if r.prior == prior and r.chain is None), None)
        fd, nfe = float(result["fd"]), int(result["nfe"])
        name = PRIOR_NAMES[prior]
        head = f"ES-{row.sampler.upper()} from the {name} (T' = {row.t_prime}, chain {row.chain}, NFE {nfe})"
        if alone is not None:
            ratio = fd / float(alone["fd"])
            effect = "improves" if ratio < 0.9 else ("hardly changes" if ratio <= 1.1 else "worsens")
            lines.append(f"{head} reaches proxy-FD {fd:.1f} vs {float(alone['fd']):.1f} for the {name} "
                         f"alone ({ratio:.2f}x): diffuse-then-denoise {effect} the prior.")
        if full is not None:
            full_fd, full_nfe = float(full[1]["fd"]), int(full[1]["nfe"])
            verdict = "beats" if fd < full_fd else "does not beat"
            lines.append(f"It {verdict} the full {full_nfe}-step DDPM ({full_fd:.1f}) with {full_nfe / nfe:.0f}x fewer "
                         f"NFE (ratio {fd / full_fd:.2f}).")
        same = [(r, res) for r, res in rows if r.prior == "noise" and int(res["nfe"]) <= nfe and r.chain != "1000"]
        if same:
            r_best, res_best = min(same, key=lambda item: item[1]["fd"])
            verdict = "beats" if fd < float(res_best["fd"]) else "does not beat"
            lines.append(f"At equal or lower budget it {verdict} the best sampler from noise "
                         f"({_label(r_best)}, {r_best.chain}, NFE {res_best['nfe']}: {float(res_best['fd']):.1f}).")
    strides = [(r, res) for r, res in rows if r.prior == "vae" and r.t_prime == 200 and r.sampler == "ddpm"]
    if len(strides) == 2:
        (a, ra), (b, rb) = strides
        lines.append(f"Orthogonality to respacing (VAE, T' = 200): NFE {ra['nfe']} gives {float(ra['fd']):.1f}, "
                     f"NFE {rb['nfe']} gives {float(rb['fd']):.1f}.")
    pairs = [(r, res) for r, res in rows if r.sampler == "ddim" and r.t_prime is not None]
    for r, res in pairs:
        twin = by_key.get(_row_key(Row("ES-DDPM", r.prior, r.t_prime, r.chain.removeprefix("ddim"))))
        if twin is not None:
            lines.append(f"{PRIOR_NAMES[r.prior]}, T' = {r.t_prime}, NFE {res['nfe']}: ancestral "
                         f"{float(twin[1]['fd']):.1f} vs DDIM {float(res['fd']):.1f}.")
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
@click.option("--processes", default=2, show_default=True, type=int, help="Tiny preset: parallel processes.")
def main(preset: str, data: str, gpus: int, smoke: bool, outdir: str | None, workdir: str | None,
         processes: int) -> None:
    """Reproduce ES-DDPM: the tiny CPU comparison, or one paper row's sampling."""
    if preset != "tiny":
        with user_errors():
            if not config_path(preset).is_file():
                raise click.ClickException(f"unknown preset {preset!r}: no es_ddpm/configs/{preset}.yaml")
        sys.exit(run_paper_preset(preset, data, gpus))
    out = Path(outdir or "results/es_ddpm/tiny")
    work = Path(workdir or ("runs/es_ddpm/reproduce-tiny" + ("-smoke" if smoke else "")))
    with user_errors():
        path = run_tiny(out, work / time.strftime("%Y%m%d-%H%M%S"), smoke, 1 if smoke else processes)
    click.echo(f"done: {path}")


if __name__ == "__main__":
    main()
