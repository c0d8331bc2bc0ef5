"""``python -m es_ddpm.sample --cfg CFG --prior npz|folder|vae|dcgan|stylegan2|noise --early-stop T' --chain 250``.

ES-DDPM sampling (spec §2.4): prior samples x_g -> x_{T'} = q_sample(x_g, k-1) -> the last k steps of the chain
(k = number of kept steps below T'; NFE = k, DDPM or DDIM). ``--early-stop none`` (or ``--prior noise``) is the
'start from scratch' baseline over the whole chain. ``--edit IMAGE`` diffuses one given image (e.g. a generator
sample with a pasted patch or a stroke) to T' and denoises it ``--num`` times: ES-DDPM's pixel-level control.
Writes ``samples.npz`` (the npz contract: arr_0 uint8 NHWC, arr_1 labels) and, with ``--png``, a PNG per sample
and a grid. The DDPM comes from ``sample.checkpoint``: one of our snapshots (EMA weights) or an official
guided-diffusion ``.pt`` state dict, both loaded with ``weights_only=True``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from common import checkpoint, dist
from common.cli import common_options, output_run, setup_run, user_errors
from common.config import ConfigError, config_rows
from common.data import DatasetError
from common.logging import progress
from common.report import save_image_grid
from es_ddpm.config import CONFIG_DIR, ESDDPMConfig, build_classifier, build_diffusion, build_unet, config_path
from es_ddpm.data import load_folder_samples, load_npz_samples, save_npz_samples, to_uint8
from es_ddpm.diffusion import GaussianDiffusion
from es_ddpm.gan import load_gan
from es_ddpm.vae import load_vae


class CountingModel(nn.Module):
    """Wraps a denoiser and counts its calls per batch (the NFE the report states)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x: Tensor, t: Tensor, **kwargs: Tensor) -> Tensor:
        self.calls += 1
        return self.model(x, t, **kwargs)


@dataclass
class SampleResult:
    images: Tensor  # uint8 (N, C, H, W)
    nfe: int  # model calls per sample
    seconds: float
    stats: dict[str, float]  # ᾱ_{T'}, SNR, effective T' (empty for scratch runs)


def load_ddpm(path: str | Path, cfg: ESDDPMConfig, device: torch.device | str = "cpu") -> nn.Module:
    """EMA weights of our snapshot (file or run dir), or an official guided-diffusion state dict."""
    path = Path(path)
    model = build_unet(cfg.model)
    state = _read_weights(checkpoint.resolve_resume(path) if path.is_dir() else path)
    if state.get("format") == checkpoint.FORMAT:
        checkpoint.load_module_state(model, checkpoint.saved_module(state, "ema", str(path)), "ema", str(path))
    else:
        checkpoint.load_module_state(model, state, "UNet", f"official checkpoint {path}")
    return model.eval().requires_grad_(False).to(device)


def _read_weights(path: Path) -> dict:
    if not path.is_file():
        raise checkpoint.CheckpointError(f"no checkpoint at {path}")
    state = checkpoint.read_weights(path)
    if not isinstance(state, dict):
        raise checkpoint.CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def prior_samples(
    cfg: ESDDPMConfig, num: int, device: torch.device, generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """x_g in [-1, 1] (N, C, H, W) and labels (or None) from ``sample.prior`` (noise: x ~ N(0, I))."""
    prior = cfg.sample.prior
    shape = (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    if prior.type == "noise":
        return torch.randn((num, *shape), generator=generator).to(device), None
    if prior.path is None:
        raise ConfigError(f"sample.prior.type is '{prior.type}' but sample.prior.path is empty; set it")
    if prior.type == "npz":
        x, labels = load_npz_samples(prior.path, need_labels=cfg.model.class_cond)
    elif prior.type == "folder":
        x, labels = load_folder_samples(prior.path, cfg.model.in_channels), None
    elif prior.type == "vae":
        x, labels = load_vae(prior.path, cfg, device).sample(num, generator, device), None
    elif prior.type == "dcgan":
        x, labels = load_gan(prior.path, cfg, device).sample(num, generator, device), None
    else:
        x, labels = stylegan2_samples(prior.path, num, generator, device), None
    if tuple(x.shape[1:]) != shape:
        raise DatasetError(f"prior samples are {tuple(x.shape[1:])} but the DDPM works on {shape}; "
                           "resize the generator's samples or change model.image_size/in_channels")
    return x.to(device), labels


def stylegan2_samples(path: str | Path, num: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """G_ema(z) of a common.stylegan2 snapshot or an official StyleGAN2-ADA pickle, quantised to 8 bits like an npz."""
    from common.stylegan2.generate import load_generator
    from common.stylegan2.training import generate_images

    G = load_generator(path, device)
    z = torch.randn(num, G.z_dim, generator=generator).to(device)
    labels = torch.zeros(num, G.c_dim, device=device) if G.c_dim else None
    return torch.from_numpy(generate_images(G, z, labels, batch=64)).to(torch.float32) / 255.0 * 2.0 - 1.0


def classifier_cond_fn(cfg: ESDDPMConfig, device: torch.device) -> object:
    """s·∇_x log p_φ(y | x_t, t) of the ADM noisy classifier (official ``cond_fn``), or None without a classifier."""
    if cfg.classifier.checkpoint is None or cfg.classifier.scale == 0:
        return None  # the official script always pays the classifier, even at scale 0 (spec pitfall 4)
    classifier = build_classifier(cfg.classifier, cfg.model.image_size, cfg.model.in_channels)
    checkpoint.load_module_state(classifier, _read_weights(Path(cfg.classifier.checkpoint)), "classifier")
    classifier = classifier.eval().requires_grad_(False).to(device)

    def cond_fn(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_probs = torch.log_softmax(classifier(x_in, t), dim=-1)
            selected = log_probs[torch.arange(len(y)), y]
            return torch.autograd.grad(selected.sum(), x_in)[0] * cfg.classifier.scale

    return cond_fn


@torch.no_grad()
def es_sample(model: nn.Module, diffusion: GaussianDiffusion, x_prior: Tensor, t_prime: int | None,
              sampler: str = "ddpm", eta: float = 0.0, batch: int = 64, generator: torch.Generator | None = None,
              labels: Tensor | None = None, clip_denoised: bool = True, cond_fn: object = None) -> SampleResult:
    """ES-DDPM from ``x_prior`` at T' = ``t_prime``, or (``t_prime=None``) the full chain from ``x_prior`` as x_T.

    ``generator`` drives every noise draw, so a run is reproducible (the official sampler is unseeded).
    """
    counting = CountingModel(model)
    k = diffusion.num_timesteps if t_prime is None else diffusion.steps_below(t_prime)
    outputs, start = [], time.perf_counter()
    starts = range(0, len(x_prior), batch)
    for i in progress(starts, len(x_prior), "ES-DDPM sampling", "img", step=lambda i: len(x_prior[i : i + batch])):
        x = x_prior[i : i + batch]
        kwargs = {"y": labels[i : i + batch].to(x.device)} if labels is not None else None
        common = dict(sampler=sampler, eta=eta, clip_denoised=clip_denoised, model_kwargs=kwargs, generator=generator,
                      cond_fn=cond_fn)
        if t_prime is None:
            out = diffusion.sample_from(counting, x, k, **common)
        else:
            out = diffusion.sample_early_stop(counting, x, k, **common)
        outputs.append(to_uint8(out).cpu())
    batches = max(1, -(-len(x_prior) // batch))
    stats = diffusion.early_stop_stats(k) if t_prime is not None else {}
    images = torch.cat(outputs) if outputs else torch.zeros((0, *x_prior.shape[1:]), dtype=torch.uint8)
    return SampleResult(images, counting.calls // batches, time.perf_counter() - start, stats)


def _edit_input(path: str, cfg: ESDDPMConfig, num: int, device: torch.device) -> Tensor:
    mode = "L" if cfg.model.in_channels == 1 else "RGB"
    size = cfg.model.image_size
    image = Image.open(path).convert(mode).resize((size, size), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return (torch.from_numpy(array) / 255.0 * 2 - 1)[None].repeat(num, 1, 1, 1).to(device)


@click.command()
@common_options(rows=config_rows(CONFIG_DIR))
@click.option("--ckpt", default=None, help="DDPM checkpoint (sample.checkpoint).")
@click.option("--prior", "prior_type", default=None,
              type=click.Choice(["noise", "npz", "folder", "vae", "dcgan", "stylegan2"]))
@click.option("--prior-path", default=None, help="npz, image folder, VAE/DCGAN snapshot, or StyleGAN2 snapshot/.pkl.")
@click.option("--early-stop", "early_stop", default=None, help="T' (sample.t_prime); 'none' = start from scratch.")
@click.option("--chain", default=None, help="Respacing: '1000', '250', 'ddim100', ... (sample.chain).")
@click.option("--sampler", type=click.Choice(["ddpm", "ddim"]), default=None)
@click.option("--num", type=int, default=None, help="Samples for noise/vae/stylegan2 priors (sample.num_samples).")
@click.option("--edit", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Diffuse this image to T' and denoise it --num times (pixel-level editing).")
@click.option("--png/--no-png", default=None, help="Also write PNGs (sample.save_png).")
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None, ckpt: str | None, prior_type: str | None, prior_path: str | None,
         early_stop: str | None, chain: str | None, sampler: str | None, num: int | None, edit: str | None,
         png: bool | None) -> None:
    """Sample ES-DDPM (prior -> diffuse to T' -> last k DDPM/DDIM steps) and write samples.npz."""
    flags = {"checkpoint": ckpt, "prior.type": prior_type, "prior.path": prior_path, "chain": chain,
             "sampler": sampler, "num_samples": num, "save_png": png,
             "t_prime": None if early_stop is None else ("null" if early_stop.lower() == "none" else early_stop)}
    sets = [f"sample.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in flags.items() if v is not None]
    setup = setup_run(ESDDPMConfig, "es_ddpm_samples", str(config_path(cfg)) if cfg else None, [*overrides, *sets],
                      outdir, None, seed, device)
    with output_run(setup), user_errors():
        run(setup.cfg, setup.run_dir, setup.info.device, edit)
    dist.cleanup()


def run(cfg: ESDDPMConfig, run_dir: Path, device: torch.device, edit: str | None = None) -> SampleResult:
    """Sample per ``cfg.sample`` and write ``samples.npz``.

    Under torchrun each rank takes a contiguous share of ceil(N/world) of the prior samples (the official
    ``NpzDataset``/``DummyDataset`` split; generated priors draw only their share), writes ``samples_rank{r}.npz``,
    and rank 0 merges them into ``samples.npz`` truncated to N (official ``gather_numpyz_and_compute_fid.py``).
    """
    s = cfg.sample
    if s.checkpoint is None:
        raise ConfigError("sample.checkpoint is empty; give --ckpt (a run dir/snapshot of es_ddpm.train or an "
                          "official guided-diffusion .pt)")
    model = load_ddpm(s.checkpoint, cfg, device)
    diffusion = build_diffusion(cfg.diffusion, cfg.model.learn_sigma, s.chain)
    rank, world = dist.get_rank(), dist.get_world_size()
    generator = torch.Generator().manual_seed(cfg.seed * world + rank)
    t_prime = s.t_prime if s.prior.type != "noise" or edit else None
    if t_prime is None and edit:
        raise ConfigError("--edit needs an early stop T' (--early-stop 100, say)")
    total = s.num_samples if edit or s.prior.type not in ("npz", "folder") else None
    if total is not None:  # generated starting points: this rank draws only its share
        share = -(-total // world)
        count = max(0, min(share, total - rank * share))
        if edit:
            x_prior, labels = _edit_input(edit, cfg, count, device), None
        else:
            x_prior, labels = prior_samples(cfg, count, device, generator)
    else:  # one output per given image, as the official loaders
        x_prior, labels = prior_samples(cfg, s.num_samples, device, generator)
        total = len(x_prior)
        share = -(-total // world)
        x_prior = x_prior[rank * share : (rank + 1) * share]
        labels = labels[rank * share : (rank + 1) * share] if labels is not None else None
    labels = _class_labels(cfg, labels, len(x_prior), generator, device)
    try:
        result = es_sample(model, diffusion, x_prior, t_prime, s.sampler, s.eta, s.batch, generator, labels,
                           s.clip_denoised, classifier_cond_fn(cfg, device))
    except ValueError as err:
        raise ConfigError(f"sample: {err}") from None
    if world > 1:
        save_npz_samples(run_dir / f"samples_rank{rank}.npz", result.images, labels)
        dist.barrier()
        if dist.is_main():
            merge_rank_samples(run_dir, world, total)
    else:
        save_npz_samples(run_dir / "samples.npz", result.images, labels)
    if s.save_png:
        for i, image in enumerate(result.images):
            array = image.permute(1, 2, 0).numpy()
            name = f"{rank * share + i:06d}.png"  # the global index of the sample
            Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(run_dir / name)
        if dist.is_main():
            with np.load(run_dir / "samples.npz") as data:
                grid = data["arr_0"][:64].transpose(0, 3, 1, 2)
            save_image_grid(run_dir / "grid.png", grid, scale=max(1, 64 // cfg.model.image_size))
    detail = ", ".join(f"{k} {v:.4g}" for k, v in result.stats.items())
    dist.print0(f"done: {total} samples, NFE {result.nfe} ({detail or 'from scratch'}), "
                f"{result.seconds:.1f}s -> {run_dir / 'samples.npz'}")
    return result


def _class_labels(cfg: ESDDPMConfig, labels: Tensor | None, count: int, generator: torch.Generator,
                  device: torch.device) -> Tensor | None:
    """The class of every sample: the prior's labels for a class-conditional model, uniform random classes when
    it starts from noise (official ``th.randint(0, NUM_CLASSES)``), none for an unconditional model."""
    prior = cfg.sample.prior.type
    if not cfg.model.class_cond:
        if labels is not None:
            dist.print0(f"warning: {cfg.sample.prior.path} holds labels (arr_1) but the model is unconditional; "
                        "they are ignored", file=sys.stderr)
        return None
    if labels is None and prior == "noise":
        return torch.randint(0, cfg.model.num_classes, (count,), generator=generator).to(device)
    if labels is None:
        raise ConfigError(f"the model is class-conditional but the '{prior}' prior gives no labels: use an npz "
                          "prior with arr_1 labels, or --prior noise (uniform random classes)")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= cfg.model.num_classes):
        raise DatasetError(f"{cfg.sample.prior.path}: labels (arr_1) must lie in 0..{cfg.model.num_classes - 1}, "
                           f"found {int(labels.min())}..{int(labels.max())}")
    return labels.to(device)


def merge_rank_samples(run_dir: Path, world_size: int, total: int) -> Path:
    """``samples_rank{0..W-1}.npz`` -> ``samples.npz`` (arr_0, and arr_1 when the ranks wrote labels), truncated to
    ``total`` like the official gather step (which keeps 50,000); the per-rank files are removed after the write."""
    parts = [run_dir / f"samples_rank{r}.npz" for r in range(world_size)]
    images, labels = [], []
    for part in parts:
        with np.load(part) as data:
            images.append(data["arr_0"])
            if "arr_1" in data:
                labels.append(data["arr_1"])
    arrays = [np.concatenate(images)[:total]]
    if labels:
        arrays.append(np.concatenate(labels)[:total])
    partial = run_dir / "samples.npz.partial"
    with partial.open("wb") as handle:
        np.savez(handle, *arrays)
    partial.replace(run_dir / "samples.npz")
    for part in parts:
        part.unlink()
    return run_dir / "samples.npz"


if __name__ == "__main__":
    main()
