"""``python -m oneshot_gan.bench [--preset ffhq_babies --device cuda]``: the cost of one adaptation iteration.

Measures, side by side in one process with the same networks (random weights: the cost does not depend on them),
GenDA's iteration [Gmain, Dmain, Dreg every ``d_reg_interval``] against fine-tuning's (TGAN: every weight trained),
and the share of GenDA's iteration spent back-propagating through the frozen G into the adaptor: Gmain's backward
through D and G, minus the same backward stopped at G's output. Medians of ``--reps`` timed repetitions after one
warm-up; on CUDA also the peak memory of each arm's iteration.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import torch
import torch.nn.functional as F

from common.config import load_config
from common.dist import DeviceError, resolve_device
from common.stylegan2.config import resolve
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.method import NetworkShape
from common.threads import configure_threads
from common.timing import median_seconds
from oneshot_gan.config import GenDAConfig, config_names, config_path
from oneshot_gan.method import GenDA


def arm_costs(preset: str, method: str, device: torch.device, reps: int, batch: int | None) -> dict[str, float]:
    """Seconds of the arm's phases (and GenDA's backward split) at the preset's networks and batch."""
    sets = [f"genda.method={method}"] + ([f"train.batch={batch}", f"train.batch_gpu={batch}"] if batch else [])
    cfg = load_config(GenDAConfig, config_path(preset), sets)
    res = cfg.data.resolution
    cfg = resolve(cfg, res, gpus=1)
    torch.manual_seed(0)
    nets = GenDA().build_networks(cfg, NetworkShape(res, 3, 0))
    G, D = nets.G.to(device).train(), nets.D.to(device).train()
    genda = method == "genda"
    trained = ([*G.mapping.adaptor.parameters()], [*D.head.parameters()]) if genda else \
        ([*G.parameters()], [*D.parameters()])
    for p in [*G.parameters(), *D.parameters()]:
        p.requires_grad_(False)
    loss = StyleGAN2Loss(G, D, r1_gamma=cfg.loss.r1_gamma, style_mixing_prob=0, pl_weight=0)
    n = cfg.train.batch_gpu
    z = torch.randn([n, G.z_dim], device=device)
    c = torch.zeros([n, 0], device=device)
    real = torch.randn([n, 3, res, res], device=device).clamp(-1, 1)

    def phase(params: list[torch.nn.Parameter], step: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for p in params:
                p.requires_grad_(True)
                p.grad = None
            step()
            for p in params:
                p.requires_grad_(False)
        return run

    gmain = phase(trained[0], lambda: loss.accumulate_gradients("Gmain", real, c, z, c, 1.0))
    dmain = phase(trained[1], lambda: loss.accumulate_gradients("Dmain", real, c, z, c, 1.0))
    dreg = phase(trained[1], lambda: loss.accumulate_gradients("Dreg", real, c, z, c, 1.0))
    out = {"Gmain": median_seconds(gmain, reps, device), "Dmain": median_seconds(dmain, reps, device),
           "Dreg": median_seconds(dreg, reps, device)}
    out["iteration"] = out["Gmain"] + out["Dmain"] + out["Dreg"] / cfg.optim.d_reg_interval
    if genda:  # the same G loss, its backward stopped at G's output (D only)
        def d_only() -> None:
            img = G(z, c).detach().requires_grad_(True)
            F.softplus(-D(img, c)).mean().backward()
        out["Gmain_D_only"] = median_seconds(d_only, reps, device)
        out["through_G_share"] = (out["Gmain"] - out["Gmain_D_only"]) / out["iteration"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        gmain(), dmain(), dreg()
        out["peak_GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


@click.command()
@click.option("--preset", default="tiny", show_default=True, help="A config row (tiny, ffhq_babies, ...).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--reps", default=5, show_default=True, type=click.IntRange(min=1), help="Timed repetitions.")
@click.option("--batch", default=None, type=click.IntRange(min=1), help="Batch per step [the config's].")
def main(preset: str, device: str, reps: int, batch: int | None) -> None:
    """Seconds per adaptation iteration: GenDA vs fine-tuning, and GenDA's back-propagation through frozen G."""
    if preset not in config_names():
        raise click.UsageError(f"unknown --preset {preset!r}; choose one of {', '.join(config_names())}")
    try:
        dev = resolve_device(device)
    except DeviceError as err:
        raise click.UsageError(str(err)) from None
    configure_threads()
    rows = {method: arm_costs(preset, method, dev, reps, batch) for method in ("genda", "finetune")}
    for method, costs in rows.items():
        click.echo(f"{method:9s} " + "  ".join(f"{k} {v:.4f}" for k, v in costs.items()))
    ratio = rows["genda"]["iteration"] / rows["finetune"]["iteration"]
    click.echo(f"{preset} on {dev}: GenDA {rows['genda']['iteration']:.4f} s / iteration = {ratio:.2f} x fine-tuning; "
               f"{100 * rows['genda']['through_G_share']:.0f}% of it back-propagates through the frozen G")


if __name__ == "__main__":
    main()
