"""``python -m common.stylegan2.bench [--configs micro16,tiny32,cifar,paper256] [--batch 32]``: seconds per training
iteration of G and D.

Each phase (Gmain, Greg, Dmain, Dreg) is timed on its own, median of ``--repeats`` calls after one warm-up, and the
iteration cost is amortised as the lazy-regularisation schedule runs it: Gmain + Greg / 4 + Dmain + Dreg / 16
(how stylegan2_base.md §9 measured the official code, whose figures the table prints beside ours where the spec
has them). Reports wall and process CPU seconds; on CPU the default is one thread (``GENFORCE_NUM_THREADS``).
"""

from __future__ import annotations

import statistics
import time

import click
import torch

from common.config import load_config
from common.stylegan2.augment import augment_pipe
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import StyleGAN2Config, preset_path, resolve
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.training import replace_cfg
from common.threads import configure_threads

# spec §9: official StyleGAN2-ADA, full iteration, batch 32, 1 thread, CPU s / iter (amortised), same widths
OFFICIAL_CPU_S_PER_ITER = {("micro16", 32): 0.41, ("tiny32", 32): 0.81}


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


def time_iteration(
    cfg: StyleGAN2Config, resolution: int, channels: int, batch: int, repeats: int, device: torch.device
) -> dict[str, float]:
    """Median wall and CPU seconds of each phase, and the amortised iteration."""
    cfg = resolve(
        replace_cfg(cfg, train={"batch": batch, "batch_gpu": batch}, D={"mbstd_group_size": min(4, batch)}),
        resolution,
        gpus=1,
    )
    torch.manual_seed(0)
    G = build_generator(cfg, resolution, channels, 0).to(device).train()
    D = build_discriminator(cfg, resolution, channels, 0).to(device).train()
    pipe = augment_pipe(cfg.augment.pipe, p=cfg.augment.p).to(device) if cfg.augment.mode != "noaug" else None
    loss = StyleGAN2Loss(
        G,
        D,
        augment_pipe=pipe,
        r1_gamma=cfg.loss.r1_gamma,
        style_mixing_prob=cfg.loss.style_mixing_prob,
        pl_weight=cfg.loss.pl_weight,
    )
    real = torch.rand(batch, channels, resolution, resolution, device=device) * 2 - 1
    c = torch.zeros(batch, 0, device=device)
    z = torch.randn(batch, G.z_dim, device=device)
    out: dict[str, float] = {}
    for phase, module in (("Gmain", G), ("Greg", G), ("Dmain", D), ("Dreg", D)):
        module.requires_grad_(True)
        walls, cpus = [], []
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
            loss.accumulate_gradients(phase, real, c, z, c, gain=1.0)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first call is a warm-up
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            module.zero_grad(set_to_none=True)
        module.requires_grad_(False)
        out[f"{phase}_wall"], out[f"{phase}_cpu"] = statistics.median(walls), statistics.median(cpus)
    g_int, d_int = cfg.optim.g_reg_interval, cfg.optim.d_reg_interval
    for kind in ("wall", "cpu"):
        out[f"iter_{kind}"] = (
            out[f"Gmain_{kind}"] + out[f"Greg_{kind}"] / g_int + out[f"Dmain_{kind}"] + out[f"Dreg_{kind}"] / d_int
        )
    return out


@click.command()
@click.option(
    "--configs", default="micro16,tiny32", show_default=True, help="Also: cifar (slow on CPU), paper256 (GPU)."
)
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def main(configs: str, batch: int, repeats: int, device: str) -> None:
    """Print a table of seconds per iteration."""
    configure_threads()
    available = bench_configs()
    dev = torch.device(device)
    click.echo(f"device {dev}, threads {torch.get_num_threads()}, batch {batch}, median of {repeats}")
    click.echo(
        f"{'config':<10}{'Gmain':>8}{'Greg':>8}{'Dmain':>8}{'Dreg':>8}{'iter wall':>11}{'iter CPU':>10}"
        f"{'official CPU':>14}{'ratio':>7}"
    )
    for name in configs.split(","):
        cfg, res, ch = available[name]
        t = time_iteration(cfg, res, ch, batch, repeats, dev)
        official = OFFICIAL_CPU_S_PER_ITER.get((name, batch)) if dev.type == "cpu" else None
        ratio = f"{t['iter_cpu'] / official:.2f}" if official else "-"
        click.echo(
            f"{name:<10}{t['Gmain_wall']:>8.3f}{t['Greg_wall']:>8.3f}{t['Dmain_wall']:>8.3f}"
            f"{t['Dreg_wall']:>8.3f}{t['iter_wall']:>11.3f}{t['iter_cpu']:>10.3f}"
            f"{official if official else '-':>14}{ratio:>7}"
        )


if __name__ == "__main__":
    main()
