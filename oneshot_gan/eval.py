"""``python -m oneshot_gan.eval --ckpt RUN --data FULL_TARGET_SET``: FID and precision/recall of an adapted G.

The protocol of CDC that GenDA follows (spec oneshot_gan.md §5): ``--num-gen`` (5,000) samples at psi = 1 against
the WHOLE target set (e.g. all ~2.5k Babies, not the one training image), FID with the TF-Inception features
(``fid50k_full``'s extractor) and improved precision/recall with the VGG16 detector at k = 3 (``pr50k3_full``'s).
The target set must be a StyleGAN2-ADA dataset at the model's resolution (``python -m common.data.tool --source
babies/ --dest babies256.zip --width 256 --height 256 --transform center-crop``); with ~300 Sketches FID is noisy
and biased, so the record keeps the reference count. Intra-cluster LPIPS (CDC) is not computed: LPIPS needs
ImageNet backbone weights this project does not ship.

    python -m oneshot_gan.eval --ckpt runs/oneshot_gan/00000-ffhq_babies --data babies256.zip --out results/babies
    python -m oneshot_gan.eval --ckpt ... --data ... --metrics fid --inception-weights inception.pt
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from common.checkpoint import CheckpointError, resolve_resume
from common.data import DatasetError, ImageDataset
from common.dist import DeviceError, resolve_device
from common.metrics import WeightsNotFoundError, build_extractor, compute_fid, compute_pr
from common.stylegan2.snapshot import load_networks
from common.threads import configure_threads

METRICS = ("fid", "pr")


@click.command()
@click.option("--ckpt", required=True, type=click.Path(exists=True), help="Run dir or snapshot .pt of an adaptation.")
@click.option("--data", required=True, help="The FULL target set (zip or folder), at the model's resolution.")
@click.option("--metrics", default="fid,pr", show_default=True, help="Comma-separated: fid, pr.")
@click.option("--num-gen", default=5000, show_default=True, type=click.IntRange(min=4), help="Generated images.")
@click.option("--inception-weights", default=None, help="TF-Inception weights file [$GENFORCE_INCEPTION_WEIGHTS].")
@click.option("--vgg16-weights", default=None, help="VGG16 detector for P&R [$GENFORCE_VGG16_WEIGHTS].")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Folder for metrics.json.")
@click.option("--device", default=None, help="cpu or cuda [cuda if available].")
def main(ckpt: str, data: str, metrics: str, num_gen: int, inception_weights: str | None, vgg16_weights: str | None,
         out: str | None, device: str | None) -> None:
    """FID and precision/recall of an adapted generator against the whole target set."""
    configure_threads()
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise click.UsageError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    try:
        dev = resolve_device(device)
        path = resolve_resume(ckpt, flag="--ckpt") if Path(ckpt).is_dir() else Path(ckpt)
        nets = load_networks(path, dev)
        G = (nets.G_ema if nets.G_ema is not None else nets.G).eval()
        reference = ImageDataset(data)
        extractors = {"fid": ("tf_inception", inception_weights), "pr": ("vgg16", vgg16_weights)}
        built = {name: build_extractor(extractors[name][0], extractors[name][1], device=dev) for name in names}
    except (CheckpointError, DatasetError, WeightsNotFoundError, DeviceError) as err:
        raise click.ClickException(str(err)) from None
    if reference.resolution != G.img_resolution:
        raise click.ClickException(f"{data} is {reference.resolution} px, the generator {G.img_resolution} px: "
                                   "convert the target set to the model's resolution with python -m common.data.tool")
    results: dict[str, float] = {}
    with torch.no_grad():
        if "fid" in built:
            results["fid"] = compute_fid(reference, G, built["fid"], num_gen=num_gen)
            click.echo(f"FID = {results['fid']:.3f}  ({num_gen} samples at psi = 1 vs {len(reference)} images)")
        if "pr" in built:
            results["precision"], results["recall"] = compute_pr(reference, G, built["pr"], num_gen=num_gen)
            click.echo(f"precision = {results['precision']:.4f}, recall = {results['recall']:.4f}  (k = 3, VGG16)")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        record = {"network": str(path), "data": data, "num_reference": len(reference), "num_gen": num_gen, **results}
        (Path(out) / "metrics.json").write_text(json.dumps(record, indent=1))
        click.echo(f"wrote {Path(out) / 'metrics.json'}")


if __name__ == "__main__":
    main()
