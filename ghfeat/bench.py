"""``python -m ghfeat.bench [--device cuda]``: GH-Feat feature extraction throughput against torchvision's ResNet-50.

The probes run the frozen encoder over whole datasets, so its images/s matters. Both networks run in eval mode with
random weights (the cost does not depend on them), side by side in one process at the same resolution and batch;
medians of ``--reps`` timed batches after one warm-up. The GH-Feat encoder is a ResNet plus an extra stage, an FPN,
the SAM and three large dense heads (152M parameters at depth 50 against ResNet-50's 25.6M), so expect it slower.
"""

from __future__ import annotations

import statistics
import time

import click
import torch
import torchvision

from common.dist import DeviceError, resolve_device
from common.threads import configure_threads
from ghfeat.encoder import DEPTHS, GHFeatEncoder


def images_per_second(net: torch.nn.Module, batch: int, resolution: int, reps: int, device: torch.device) -> float:
    """Median images/s of ``net`` on random (batch, 3, resolution, resolution) inputs, no grad."""
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    times = []
    with torch.no_grad():
        for i in range(reps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            net(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:  # the first call warms up
                times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


@click.command()
@click.option("--depth", default=50, show_default=True, type=click.Choice([str(d) for d in DEPTHS]),
              help="Encoder depth (official: 50).")
@click.option("--resolution", default=256, show_default=True, type=click.IntRange(min=64), help="Input side.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--reps", default=5, show_default=True, type=click.IntRange(min=1), help="Timed batches.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
def main(depth: str, resolution: int, batch: int, reps: int, device: str) -> None:
    """Images/s of the GH-Feat encoder and of torchvision's ResNet-50 at the same input."""
    try:
        dev = resolve_device(device)
        encoder = GHFeatEncoder(depth=int(depth), resolution=resolution).to(dev).eval()
    except (DeviceError, ValueError) as err:
        raise click.UsageError(str(err)) from None
    configure_threads()
    resnet = torchvision.models.resnet50(weights=None).to(dev).eval()
    ours = images_per_second(encoder, batch, resolution, reps, dev)
    reference = images_per_second(resnet, batch, resolution, reps, dev)
    click.echo(f"GH-Feat encoder (depth {depth}) {ours:.2f} img/s, torchvision ResNet-50 {reference:.2f} img/s at "
               f"{resolution} px, batch {batch}, {dev}: {ours / reference:.2f}x")


if __name__ == "__main__":
    main()
