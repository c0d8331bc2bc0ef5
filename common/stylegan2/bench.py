"""``python -m common.stylegan2.bench [--configs micro16,tiny32,cifar,paper256] [--batch 32] [--official DIR]``:
seconds per training iteration of G and D.

Each phase (Gmain, Greg, Dmain, Dreg) is timed on its own, median of ``--repeats`` calls after one warm-up, and the
iteration cost is amortised as the lazy-regularisation schedule runs it: Gmain + Greg / 4 + Dmain + Dreg / 16
(how stylegan2_base.md §9 measured the official code). Reports wall and process CPU seconds; on CPU the default is
one thread (``GENFORCE_NUM_THREADS``).

``--official DIR`` (a clone of NVlabs/stylegan2-ada-pytorch) times the official ``Generator``, ``Discriminator``,
``AugmentPipe`` and ``StyleGAN2Loss`` side by side: built with the kwargs its ``train.py`` derives from the same
config, fed the same batch, and called alternately with ours within every phase, so both see the same machine
state. Without it, the CPU figures spec §9 recorded for the official code are printed where it has them.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import click
import torch
from torch import nn

from common.config import load_config
from common.stylegan2.augment import AUGPIPE_PRESETS, augment_pipe
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import StyleGAN2Config, preset_path, resolve
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.training import replace_cfg
from common.threads import configure_threads

# spec §9: official StyleGAN2-ADA, full iteration, batch 32, 1 thread, CPU s / iter (amortised), same widths
OFFICIAL_CPU_S_PER_ITER = {("micro16", 32): 0.41, ("tiny32", 32): 0.81}
PHASES = ("Gmain", "Greg", "Dmain", "Dreg")

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # real images, real c, z, generated c
Accumulate = Callable[[str, Batch], None]


def bench_configs() -> dict[str, tuple[StyleGAN2Config, int, int]]:
    """name -> (config, resolution, channels). 'micro16'/'tiny32' are the spec §9 widths the official code was
    timed at (cbase 1024, cmax 64, z = w = 64, 2 mapping layers, mbstd 4, R1 gamma 0.01, ADA 'bgc'); 'cifar' runs
    fp32 (CPU); 'paper256' is the GPU benchmark of the issue (batch 8 per GPU, fp16 blocks)."""
    tiny = load_config(StyleGAN2Config, preset_path("tiny"))
    micro = replace_cfg(tiny, loss={"r1_gamma": 0.01}, augment={"p": 0.3})
    cifar = replace_cfg(load_config(StyleGAN2Config, preset_path("cifar")), train={"fp32": True})
    paper256 = load_config(StyleGAN2Config, preset_path("paper256"))  # fp16 blocks on CUDA (make gpu-check)
    return {
        "micro16": (micro, 16, 3),
        "tiny32": (micro, 32, 3),
        "cifar": (cifar, 32, 3),
        "paper256": (paper256, 256, 3),
    }


def bench_setup(cfg: StyleGAN2Config, resolution: int, batch: int) -> StyleGAN2Config:
    """The resolved config at ``batch`` images per step on one device."""
    cfg = replace_cfg(cfg, train={"batch": batch, "batch_gpu": batch}, D={"mbstd_group_size": min(4, batch)})
    return resolve(cfg, resolution, gpus=1)


def our_arm(cfg: StyleGAN2Config, resolution: int, channels: int, device: torch.device
            ) -> tuple[Accumulate, dict[str, nn.Module]]:
    """Our G, D, augment pipe and loss: ``accumulate(phase, batch)`` and the modules {"G", "D"}."""
    torch.manual_seed(0)
    G = build_generator(cfg, resolution, channels, 0).to(device).train()
    D = build_discriminator(cfg, resolution, channels, 0).to(device).train()
    pipe = augment_pipe(cfg.augment.pipe, p=cfg.augment.p).to(device) if cfg.augment.mode != "noaug" else None
    loss = StyleGAN2Loss(G, D, augment_pipe=pipe, r1_gamma=cfg.loss.r1_gamma,
                         style_mixing_prob=cfg.loss.style_mixing_prob, pl_weight=cfg.loss.pl_weight,
                         pl_decay=cfg.loss.pl_decay, pl_batch_shrink=cfg.loss.pl_batch_shrink)
    return (lambda phase, batch: loss.accumulate_gradients(phase, *batch, gain=1.0)), {"G": G, "D": D}


def official_arm(root: Path, cfg: StyleGAN2Config, resolution: int, channels: int, device: torch.device
                 ) -> tuple[Accumulate, dict[str, nn.Module]]:
    """The official networks, pipe and loss from a stylegan2-ada-pytorch clone, with its train.py kwargs."""
    networks, official_loss, augment = (import_from(root, f"training.{name}")
                                        for name in ("networks", "loss", "augment"))
    g, d, fp32 = cfg.G, cfg.D, cfg.train.fp32
    torch.manual_seed(0)
    G = networks.Generator(
        z_dim=g.z_dim, c_dim=0, w_dim=g.w_dim, img_resolution=resolution, img_channels=channels,
        mapping_kwargs={"num_layers": g.mapping_layers},
        synthesis_kwargs={"channel_base": g.channel_base, "channel_max": g.channel_max,
                          "num_fp16_res": 0 if fp32 else g.num_fp16_res, "conv_clamp": None if fp32 else g.conv_clamp},
    ).to(device).train()
    D = networks.Discriminator(
        c_dim=0, img_resolution=resolution, img_channels=channels, architecture=d.architecture,
        channel_base=d.channel_base, channel_max=d.channel_max, num_fp16_res=0 if fp32 else d.num_fp16_res,
        conv_clamp=None if fp32 else d.conv_clamp,
        epilogue_kwargs={"mbstd_group_size": d.mbstd_group_size, "mbstd_num_channels": d.mbstd_num_channels},
    ).to(device).train()
    pipe = None
    if cfg.augment.mode != "noaug":
        pipe = augment.AugmentPipe(**AUGPIPE_PRESETS[cfg.augment.pipe]).to(device)
        pipe.p.copy_(torch.as_tensor(cfg.augment.p))
    loss = official_loss.StyleGAN2Loss(
        device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=pipe,
        style_mixing_prob=cfg.loss.style_mixing_prob, r1_gamma=cfg.loss.r1_gamma,
        pl_batch_shrink=cfg.loss.pl_batch_shrink, pl_decay=cfg.loss.pl_decay, pl_weight=cfg.loss.pl_weight,
    )
    return (lambda phase, batch: loss.accumulate_gradients(phase, *batch, sync=True, gain=1.0)), {"G": G, "D": D}


def import_from(root: Path, name: str) -> ModuleType:
    """Import ``name`` from the official clone at ``root``, dropping same-named packages imported from elsewhere.
    ``dnnlib`` imports ``requests`` for downloads only; a stand-in module is used when it is not installed. A clone
    without that module is one clear line."""
    top = name.split(".")[0]
    origin = getattr(sys.modules.get(top), "__file__", None) or "/"
    if top in sys.modules and Path(root).resolve() not in Path(origin).resolve().parents:
        for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[key]
    try:
        import requests  # noqa: F401
    except ImportError:
        sys.modules.setdefault("requests", types.ModuleType("requests"))
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
            raise  # the clone is there but lacks one of its own dependencies: main names it
        raise click.UsageError(f"--official {root}: cannot import {name} from it ({err}); give a clone of the "
                               "official repository") from None
    finally:
        sys.path.remove(str(root))


def alternating_medians(arms: dict[str, Callable[[], object]], repeats: int,
                        device: torch.device | None = None) -> dict[str, float]:
    """Median wall seconds per call of each arm; the arms take turns in a rotating order, one warm-up call each,
    so that every arm sees the same machine state (CUDA synchronised around each call)."""
    times: dict[str, list[float]] = {name: [] for name in arms}
    order = list(arms)
    cuda = device is not None and device.type == "cuda"
    for rep in range(repeats + 1):
        for name in order[rep % len(order):] + order[: rep % len(order)]:
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            arms[name]()
            if cuda:
                torch.cuda.synchronize(device)
            if rep:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def time_arms(arms: dict[str, tuple[Accumulate, dict[str, nn.Module]]], cfg: StyleGAN2Config, resolution: int,
              channels: int, batch: int, repeats: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of each phase, and the amortised iteration, per arm.

    Within a phase the arms take turns call by call (one warm-up call each first), on the same batch.
    """
    real = torch.rand(batch, channels, resolution, resolution, device=device) * 2 - 1
    c = torch.zeros(batch, 0, device=device)
    z = torch.randn(batch, cfg.G.z_dim, device=device)
    inputs = (real, c, z, c)
    out: dict[str, dict[str, float]] = {name: {} for name in arms}
    for phase in PHASES:
        samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in arms}
        for _, modules in arms.values():
            modules["G" if phase.startswith("G") else "D"].requires_grad_(True)
        for i in range(repeats + 1):
            for name, (accumulate, modules) in arms.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                wall, cpu = time.perf_counter(), time.process_time()
                accumulate(phase, inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i:  # the first call is a warm-up
                    samples[name][0].append(time.perf_counter() - wall)
                    samples[name][1].append(time.process_time() - cpu)
                for module in modules.values():
                    module.zero_grad(set_to_none=True)
        for name, (_, modules) in arms.items():
            modules["G" if phase.startswith("G") else "D"].requires_grad_(False)
            walls, cpus = samples[name]
            out[name][f"{phase}_wall"], out[name][f"{phase}_cpu"] = statistics.median(walls), statistics.median(cpus)
    g_int, d_int = cfg.optim.g_reg_interval, cfg.optim.d_reg_interval
    for t in out.values():
        for kind in ("wall", "cpu"):
            t[f"iter_{kind}"] = (t[f"Gmain_{kind}"] + t[f"Greg_{kind}"] / g_int + t[f"Dmain_{kind}"]
                                 + t[f"Dreg_{kind}"] / d_int)
    return out


@click.command()
@click.option(
    "--configs", default="micro16,tiny32", show_default=True, help="Also: cifar (slow on CPU), paper256 (GPU)."
)
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--official", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A clone of NVlabs/stylegan2-ada-pytorch to time side by side.")
def main(configs: str, batch: int, repeats: int, device: str, official: Path | None) -> None:
    """Print a table of seconds per iteration."""
    configure_threads()
    available = bench_configs()
    names = [n.strip() for n in configs.split(",") if n.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise click.UsageError(f"unknown configs {unknown}; choose from {sorted(available)}")
    if official is not None and not (official / "training" / "networks.py").is_file():
        raise click.BadParameter(f"{official} is not a stylegan2-ada-pytorch clone (no training/networks.py); "
                                 "git clone https://github.com/NVlabs/stylegan2-ada-pytorch and pass its folder",
                                 param_hint="--official")
    dev = torch.device(device)
    click.echo(f"device {dev}, threads {torch.get_num_threads()}, batch {batch}, median of {repeats}, "
               f"official: {official or 'recorded CPU figures (spec §9)'}")
    click.echo(f"{'config':<10}{'arm':<10}{'Gmain':>8}{'Greg':>8}{'Dmain':>8}{'Dreg':>8}{'iter wall':>11}"
               f"{'iter CPU':>10}{'ratio CPU':>11}")
    for name in names:
        base, res, ch = available[name]
        cfg = bench_setup(base, res, batch)
        arms = {"ours": our_arm(cfg, res, ch, dev)}
        if official is not None:
            try:
                arms["official"] = official_arm(official, cfg, res, ch, dev)
            except ModuleNotFoundError as err:
                raise click.ClickException(f"the official code in {official} imports '{err.name}', which is not "
                                           f"installed: .venv/bin/pip install {err.name}") from None
            ours_n = [_param_count(m) for m in arms["ours"][1].values()]
            theirs_n = [_param_count(m) for m in arms["official"][1].values()]
            if ours_n != theirs_n:
                raise click.ClickException(f"{name}: G/D parameters differ from the official networks ({ours_n} vs "
                                f"{theirs_n}); the comparison would not be like for like")
        times = time_arms(arms, cfg, res, ch, batch, repeats, dev)
        recorded = OFFICIAL_CPU_S_PER_ITER.get((name, batch)) if dev.type == "cpu" and official is None else None
        reference = times["official"]["iter_cpu"] if official is not None else recorded
        for arm, t in times.items():
            ratio = f"{t['iter_cpu'] / reference:.2f}" if reference else "-"
            click.echo(f"{name:<10}{arm:<10}{t['Gmain_wall']:>8.3f}{t['Greg_wall']:>8.3f}{t['Dmain_wall']:>8.3f}"
                       f"{t['Dreg_wall']:>8.3f}{t['iter_wall']:>11.3f}{t['iter_cpu']:>10.3f}{ratio:>11}")
        if recorded:
            click.echo(f"{name:<10}{'recorded':<10}{'':>43}{recorded:>10.3f}{1.0:>11.2f}")


if __name__ == "__main__":
    main()
