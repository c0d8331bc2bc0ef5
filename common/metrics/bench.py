"""``python -m common.metrics.bench``: Inception feature-extraction throughput, ours vs pytorch-fid's own pipeline.

Same images, same batch size, same (random) weights, same device. pytorch-fid is not a project dependency: install
it somewhere throw-away and point ``--pytorch-fid`` at it::

    pip install --target /tmp/pfid pytorch-fid --no-deps
    python -m common.metrics.bench --pytorch-fid /tmp/pfid

No weights are needed: pytorch-fid's download hook is replaced by our random state dict (which doubles as a check
that both networks have the same layout), and the features of our ``legacy_pytorch`` mode are compared with
pytorch-fid's. Two pipelines are timed: network input from in-memory uint8 tensors, and end to end from a folder
of PNGs (decode + loader + network; pytorch-fid's ``get_activations`` vs our ``dataset_features``). Each is run
``--reps`` times, alternating ours and theirs; the table gives medians in images/s.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from common.data import ImageDataset
from common.data.synthetic import shapes
from common.metrics.compute import dataset_features
from common.metrics.extractors import InceptionExtractor
from common.metrics.inception import FIDInceptionV3
from common.report import markdown_table


def _pytorch_fid(path: str | None, state: dict[str, torch.Tensor]) -> tuple[torch.nn.Module, Callable]:
    """pytorch-fid's InceptionV3 (pool3 block) loaded with ``state`` instead of the downloaded weights."""
    if path:
        sys.path.insert(0, path)
    try:
        import pytorch_fid.inception as pfid_inception
        from pytorch_fid.fid_score import get_activations
    except ImportError:
        raise click.UsageError("pytorch-fid not found: `pip install --target /tmp/pfid pytorch-fid --no-deps` and "
                               "pass --pytorch-fid /tmp/pfid") from None
    pfid_inception.load_state_dict_from_url = lambda *args, **kwargs: state
    return pfid_inception.InceptionV3([3]).eval(), get_activations


def _median_rate(num: int, fn: Callable[[], object], seconds: list[float]) -> None:
    start = time.perf_counter()
    fn()
    seconds.append(num / (time.perf_counter() - start))


@click.command()
@click.option("--pytorch-fid", "pfid_path", default=None, help="Folder where pytorch-fid is installed (--target).")
@click.option("--num", type=int, default=100, show_default=True, help="Images per timed pass.")
@click.option("--batch", type=int, default=50, show_default=True, help="Batch size (pytorch-fid's default).")
@click.option("--resolution", type=int, default=256, show_default=True)
@click.option("--reps", type=int, default=3, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch intra-op threads.")
def main(pfid_path: str | None, num: int, batch: int, resolution: int, reps: int, threads: int) -> None:
    """Print a markdown table of median images/s and the feature parity with pytorch-fid."""
    torch.set_num_threads(threads)
    os.environ["GENFORCE_NO_PROGRESS"] = "1"
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    with torch.no_grad():  # non-trivial BN statistics, so the parity check sees BN folding at work
        for name, value in net.state_dict().items():
            if name.endswith(("running_var", "bn.weight")):
                value.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", "bn.bias")):
                value.normal_(0.0, 0.1)
    pfid_model, get_activations = _pytorch_fid(pfid_path, net.state_dict())
    ours = {mode: InceptionExtractor(net, resize=mode) for mode in ("tf1", "legacy_pytorch")}
    images = torch.from_numpy(np.ascontiguousarray(shapes(num, resolution, seed=0)[0].transpose(0, 3, 1, 2)))

    def pfid_memory() -> np.ndarray:  # pytorch-fid's get_activations loop on ToTensor'd images
        out = []
        for chunk in images.split(batch):
            with torch.no_grad():
                out.append(pfid_model(chunk.float().div(255))[0].squeeze(3).squeeze(2).cpu().numpy())
        return np.concatenate(out)

    def ours_memory(mode: str) -> Callable[[], np.ndarray]:
        return lambda: np.concatenate([ours[mode].extract(chunk).numpy() for chunk in images.split(batch)])

    reference = pfid_memory()
    parity = np.abs(ours_memory("legacy_pytorch")() - reference).max() / np.abs(reference).max()
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
            files.append(Path(tmp) / f"{i:05d}.png")
            Image.fromarray(image).save(files[-1])
        dataset = ImageDataset(tmp)
        arms = {
            ("memory", "ours tf1"): ours_memory("tf1"),
            ("memory", "ours legacy_pytorch"): ours_memory("legacy_pytorch"),
            ("memory", "pytorch-fid"): pfid_memory,
            ("folder", "ours tf1"): lambda: dataset_features(dataset, ours["tf1"], capture_all=True, batch_size=batch),
            ("folder", "pytorch-fid"): lambda: get_activations(files, pfid_model, batch, 2048, "cpu", num_workers=0),
        }
        rates: dict[tuple[str, str], list[float]] = {arm: [] for arm in arms}
        for fn in arms.values():  # warm-up
            fn()
        for _ in range(reps):
            for arm, fn in arms.items():
                _median_rate(num, fn, rates[arm])
    medians = {arm: statistics.median(r) for arm, r in rates.items()}
    rows = []
    for (pipeline, name), rate in medians.items():
        baseline = medians[(pipeline, "pytorch-fid")]
        rows.append([pipeline, name, rate, rate / baseline])
    click.echo(f"{num} images {resolution}x{resolution}, batch {batch}, {threads} thread(s), {reps} reps, "
               f"torch {torch.__version__}, CPU")
    click.echo(markdown_table(["pipeline", "extractor", "img/s (median)", "vs pytorch-fid"], rows, "{:.3g}"))
    click.echo(f"max |ours legacy_pytorch - pytorch-fid| / max |pytorch-fid| = {parity:.3g} over the features "
               "(same random weights)")


if __name__ == "__main__":
    main()
