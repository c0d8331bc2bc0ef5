"""``python -m common.metrics {fid,kid,pr,is}``: GAN metrics of an image set or a generator against real data.

    python -m common.metrics fid --real ffhq256.zip --fake samples.npz --weights pt_inception-2015-12-05-6726825d.pth
    python -m common.metrics fid --real ffhq256.zip --network snapshot.pt --num 50000
    python -m common.metrics fid --real data/shapes-r32-n2000-s0.zip --fake fakes/ --extractor proxy   # proxy-FD
    torchrun --nproc_per_node=8 -m common.metrics kid --real ... --network ...

``--fake`` is a folder or zip of images or an ``.npz`` with uint8 ``arr_0`` (N, H, W, C). ``--network CKPT`` loads
a generator with the loader named by ``--generator module:function`` (called ``function(path, device)``; it
returns G with ``z_dim``, ``c_dim`` and ``G(z, c) -> [-1, 1]`` images); the default is ``common.stylegan2``'s.
Results are printed in one line and, with ``--out FILE``, appended to FILE as one JSON line.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn

from common import dist
from common.checkpoint import CheckpointError
from common.data import DatasetError
from common.metrics.compute import open_images
from common.metrics.extractors import EXTRACTORS, FeatureExtractor, InceptionExtractor, build_extractor
from common.metrics.gan import compute_fid, compute_is, compute_kid, compute_pr
from common.metrics.resize import RESIZE_MODES
from common.metrics.weights import WeightsNotFoundError
from common.threads import configure_threads

DEFAULT_GENERATOR_LOADER = "common.stylegan2.generate:load_generator"


def load_generator(spec: str, path: str, device: torch.device) -> nn.Module:
    """Import ``module:function`` and return ``function(path, device)`` in eval mode."""
    module_name, _, function_name = spec.partition(":")
    try:
        loader = getattr(importlib.import_module(module_name), function_name or "load_generator")
    except (ImportError, AttributeError) as err:
        raise click.UsageError(
            f"--network needs a generator loader; {spec!r} is not importable ({err}). The default is "
            f"common.stylegan2's; pass --generator your.module:function (called function(path, device), returning "
            f"G with z_dim, c_dim and G(z, c) -> images in [-1, 1])"
        ) from None
    return loader(path, device).eval().requires_grad_(False)


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--real", type=click.Path(exists=True), default=None, help="Real images: folder, zip or .npz."),
        click.option("--fake", type=click.Path(exists=True), default=None, help="Generated images: folder, zip, .npz."),
        click.option("--network", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Generator checkpoint (instead of --fake)."),
        click.option("--generator", "generator_loader", default=DEFAULT_GENERATOR_LOADER, show_default=True,
                     help="module:function that loads --network."),
        click.option("--num", type=int, default=50000, show_default=True, help="Generated images (at most)."),
        click.option("--max-real", type=int, default=None, help="Real images at most [metric's official value]."),
        click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Extractor weights [$GENFORCE_INCEPTION_WEIGHTS / $GENFORCE_VGG16_WEIGHTS]."),
        click.option("--resize", type=click.Choice(RESIZE_MODES), default="tf1", show_default=True,
                     help="Inception input pipeline (never mix modes in one table)."),
        click.option("--download", is_flag=True, help="Allow the sha256-checked download of the Inception weights."),
        click.option("--batch", type=int, default=64, show_default=True),
        click.option("--workers", type=int, default=3, show_default=True, help="Data-loading processes."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of latents and labels."),
        click.option("--device", default=None, help="cpu, cuda or cuda:N [auto]."),
        click.option("--no-cache", is_flag=True, help="Recompute the real statistics."),
        click.option("--out", type=click.Path(dir_okay=False), default=None, help="Append the result as JSONL."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run(metric: str, default_extractor: str, default_max_real: int | None,
         compute: Callable[..., tuple[str, dict[str, float], dict[str, Any]]], **opts: Any) -> None:
    """Shared setup (devices, data, extractor), the metric, the one-line summary and the JSONL record (with the
    settings that change the number: covariance convention, KID subsets/size/seed, k, splits)."""
    configure_threads()
    try:
        info = dist.init_distributed(opts["device"])
    except dist.DeviceError as err:
        raise click.UsageError(str(err)) from None
    if (opts["fake"] is None) == (opts["network"] is None):
        raise click.UsageError("give exactly one of --fake PATH and --network CKPT")
    try:
        fake = open_images(opts["fake"]) if opts["fake"] else load_generator(
            opts["generator_loader"], opts["network"], info.device)
        conditional = isinstance(fake, nn.Module) and fake.c_dim > 0  # labels are drawn from the real dataset
        real = open_images(opts["real"], use_labels=conditional) if opts["real"] else None
        extractor = build_extractor(opts["extractor"] or default_extractor, opts["weights"], opts["resize"],
                                    info.device, allow_download=opts["download"] or None)
    except (WeightsNotFoundError, DatasetError, CheckpointError, ValueError) as err:
        raise click.UsageError(str(err)) from None
    max_real = opts["max_real"] if opts["max_real"] is not None else default_max_real
    kwargs = {"batch_size": opts["batch"], "num_workers": opts["workers"], "cache": not opts["no_cache"]}
    if isinstance(fake, nn.Module):
        kwargs["seed"] = opts["seed"]
    start = time.time()
    label, results, settings = compute(real=real, fake=fake, extractor=extractor, max_real=max_real, **kwargs)
    num_fake = opts["num"] if isinstance(fake, nn.Module) else min(opts["num"], len(fake))
    num_real = None if real is None else (len(real) if max_real is None else min(len(real), max_real))
    record = {"metric": metric, "label": label, "results": results, "protocol": extractor.protocol,
              "num_fake": num_fake, "num_real": num_real, "fake": opts["fake"] or opts["network"],
              "real": opts["real"], "settings": settings, "seed": opts["seed"], "num_gpus": dist.get_world_size(),
              "seconds": round(time.time() - start, 1)}
    values = "  ".join(f"{k} {v:.6g}" for k, v in results.items())
    dist.print0(f"{values}  ({extractor.protocol}; {num_fake} fake vs {num_real} real; "
                f"{record['seconds']} s)")
    if opts["out"] and dist.get_rank() == 0:
        with open(Path(opts["out"]), "a") as f:
            f.write(json.dumps(record) + "\n")
        dist.print0(f"appended to {opts['out']}")
    dist.cleanup()


def _need_real(real: Any) -> None:
    if real is None:
        raise click.UsageError("--real is required for this metric")


@click.group()
def main() -> None:
    """GAN metrics with the official protocols (FID/KID/IS: stylegan2-ada-pytorch; proxy-FD offline)."""


@main.command()
@_options
@click.option("--extractor", type=click.Choice(EXTRACTORS), default=None, help="[tf_inception]; proxy -> proxy-FD.")
@click.option("--unbiased", is_flag=True, help="Covariance /(n-1) (pytorch-fid, clean-fid) instead of /n "
              "(stylegan2-ada); always /(n-1) with --resize clean, as clean-fid computes it.")
def fid(unbiased: bool, **opts: Any) -> None:
    """Fréchet Inception Distance (fid50k_full by default: 50k generated vs all real)."""
    def compute(real: Any, fake: Any, extractor: FeatureExtractor, max_real: int | None, **kw: Any):
        _need_real(real)
        n_minus_1 = unbiased or extractor.metric_label == "clean-FID"  # clean-fid's np.cov
        value = compute_fid(real, fake, extractor, num_gen=opts["num"], max_real=max_real, unbiased=n_minus_1, **kw)
        covariance = "/(n-1) (pytorch-fid, clean-fid)" if n_minus_1 else "/n (stylegan2-ada)"
        return extractor.metric_label, {extractor.metric_label: value}, {"covariance": covariance}
    _run("fid", "tf_inception", None, compute, **opts)


@main.command()
@_options
@click.option("--extractor", type=click.Choice(EXTRACTORS), default=None, help="[tf_inception].")
@click.option("--subsets", type=int, default=100, show_default=True)
@click.option("--subset-size", type=int, default=1000, show_default=True)
def kid(subsets: int, subset_size: int, **opts: Any) -> None:
    """Kernel Inception Distance (kid50k_full: 50k generated vs up to 1M real; printed x1e3 as KIDx1e3)."""
    def compute(real: Any, fake: Any, extractor: FeatureExtractor, max_real: int | None, **kw: Any):
        _need_real(real)
        value = compute_kid(real, fake, extractor, num_gen=opts["num"], max_real=max_real, num_subsets=subsets,
                            max_subset_size=subset_size, seed=opts["seed"], **kw)
        return "KID", {"KID": value, "KIDx1e3": value * 1e3}, {"subsets": subsets, "subset_size": subset_size,
                                                                "subset_seed": opts["seed"]}
    _run("kid", "tf_inception", 1_000_000, compute, **opts)


@main.command()
@_options
@click.option("--extractor", type=click.Choice(EXTRACTORS), default=None, help="[vgg16] (NVIDIA TorchScript file).")
@click.option("--k", "nhood", type=int, default=3, show_default=True, help="Neighbourhood size.")
def pr(nhood: int, **opts: Any) -> None:
    """Improved precision and recall (pr50k3_full: 50k generated vs up to 200k real, k=3, VGG16)."""
    def compute(real: Any, fake: Any, extractor: FeatureExtractor, max_real: int | None, **kw: Any):
        _need_real(real)
        precision, recall = compute_pr(real, fake, extractor, num_gen=opts["num"], max_real=max_real, k=nhood, **kw)
        return "precision/recall", {"precision": precision, "recall": recall}, {"k": nhood}
    _run("pr", "vgg16", 200_000, compute, **opts)


@main.command(name="is")
@_options
@click.option("--splits", type=int, default=10, show_default=True)
def inception_score_command(splits: int, **opts: Any) -> None:
    """Inception Score (is50k: 50k generated, 10 splits, 1008-way softmax without output bias)."""
    def compute(real: Any, fake: Any, extractor: FeatureExtractor, max_real: int | None, cache: bool, **kw: Any):
        if not isinstance(extractor, InceptionExtractor):
            raise click.UsageError("the Inception Score needs the tf_inception extractor")
        mean, std = compute_is(fake, extractor, num_gen=opts["num"], num_splits=splits, real=real, **kw)
        return "IS", {"IS": mean, "IS_std": std}, {"splits": splits}
    _run("is", "tf_inception", None, compute, extractor=None, **opts)


if __name__ == "__main__":
    main()
