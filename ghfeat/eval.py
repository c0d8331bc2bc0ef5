"""GH-Feat's downstream protocols on a frozen encoder (``probes.py``): features, probes and generative uses.

    python -m ghfeat.eval extract --encoder runs/ghfeat/00000-tiny --images list.txt -o features/
    python -m ghfeat.eval probe --encoder RUN --train train.zip --test test.zip --task linear [--groups coarse]
    python -m ghfeat.eval probe --encoder RUN --train a.zip --test b.zip --task ridge     # vector labels
    python -m ghfeat.eval probe --encoder RUN --train gallery.zip --test queries.zip --task retrieval --k 5
    python -m ghfeat.eval reconstruct --encoder RUN --images faces/ --out recon.png
    python -m ghfeat.eval mix --encoder RUN --images faces/ --groups fine --out mixing.png
    python -m ghfeat.eval edit --encoder RUN --a a.png --b b.png --box 96,64,64,128 --out edit.png

``--encoder`` is a GH-Feat run dir or snapshot of this project (E with its frozen StyleGAN2 G), or an official
``ghfeat-encoder-*-256.pkl`` (TensorFlow pickle read without TensorFlow, ``official.py``): then E only, so
``extract`` and ``probe`` work and the generative commands, which need the StyleGAN v1 G, say so. Images: an image
list ``.txt`` (official ``extract_ghfeat.py`` input), a folder or a StyleGAN2-ADA zip; probes read the labels of the
zip's ``dataset.json`` (class indices for ``linear``/``retrieval``, number lists for ``ridge``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from common.cli import user_errors
from common.dist import DeviceError, resolve_device
from common.report import save_image_grid
from common.threads import configure_threads
from ghfeat import probes
from ghfeat.codes import codes_to_styles
from ghfeat.images import image_sources, load_images
from ghfeat.training import load_encoder, to_uint8

GROUP_NAMES = ",".join(probes.GROUPS)


class Frozen:
    """A frozen encoder and, for this project's runs, its generator."""

    def __init__(self, path: str, device: torch.device) -> None:
        self.device, self.official = device, path.endswith(".pkl")
        if self.official:
            from ghfeat.official import load_official_encoder

            self.E, self.G = load_official_encoder(path).to(device), None
        else:
            self.E, self.G, _ = load_encoder(path, device)
        self.resolution = self.E.resolution

    def codes(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return probes.extract_codes(self.E, images, device=self.device)

    @torch.no_grad()
    def decode(self, codes: list[torch.Tensor]) -> np.ndarray:
        if self.G is None:
            raise click.UsageError("an official encoder pickle carries a StyleGAN v1 G, which this project does not "
                                   "run; decode with a GH-Feat run of this project (its StyleGAN2 G)")
        styles = codes_to_styles([c.to(self.device) for c in codes], self.G.synthesis.style_dims())
        return to_uint8(self.G.synthesis(None, styles=styles, noise_mode="const"))


def _open(encoder: str, device: str | None) -> Frozen:
    configure_threads()
    try:
        dev = resolve_device(device)
    except DeviceError as err:
        raise click.UsageError(str(err)) from None
    path = Path(encoder)
    if not path.exists() or (path.is_file() and path.suffix not in (".pt", ".pkl")):
        what = "does not exist" if not path.exists() else "is not a GH-Feat snapshot (.pt) or official pickle (.pkl)"
        raise click.UsageError(f"encoder '{encoder}' {what}; give a GH-Feat run dir / snapshot-*.pt or an official "
                               "ghfeat-encoder-*.pkl")
    return Frozen(encoder, dev)


def _groups(text: str) -> list[str]:
    groups = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in groups if g not in probes.GROUPS]
    if unknown or not groups:
        raise click.UsageError(f"--groups takes names from {GROUP_NAMES}, got {text!r}")
    return groups


def _save_png(path: str, grid: np.ndarray, columns: int, resolution: int) -> None:
    save_image_grid(path, grid, columns=columns, scale=max(1, 128 // resolution), spacing=1)


encoder_option = click.option("--encoder", required=True, help="GH-Feat run dir / snapshot, or official .pkl.")
device_option = click.option("--device", default=None, help="cpu, cuda or cuda:N [auto].")


@click.group()
def main() -> None:
    """GH-Feat on a frozen encoder: extract, probe, reconstruct, mix, edit."""


@main.command()
@encoder_option
@click.option("--images", required=True, help="Image list .txt, folder or zip.")
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False), help="Where ghfeat.npy goes.")
@device_option
def extract(encoder: str, images: str, outdir: str, device: str | None) -> None:
    """Write ghfeat.npy (official layout [N, 14, 1024] for an official encoder; else [N, coarse+middle+fine]) and
    the image names."""
    with user_errors():
        frozen = _open(encoder, device)
        pixels, names = load_images(images, frozen.resolution)
        codes = frozen.codes(pixels)
        if frozen.official:
            from ghfeat.encoder import official_layout

            feats = official_layout(*(torch.from_numpy(c) for c in codes)).numpy()
        else:
            feats = probes.features(codes)
        out = Path(outdir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise click.UsageError(f"--outdir {out}: cannot create it ({err.strerror or err}); give a folder") from None
        with tempfile.NamedTemporaryFile(dir=out, suffix=".npy", delete=False) as tmp:
            np.save(tmp, feats)
        os.replace(tmp.name, out / "ghfeat.npy")
        (out / "image_list.txt").write_text("".join(f"{n}\n" for n in names))
    click.echo(f"{out / 'ghfeat.npy'}: {feats.shape} features of {len(names)} images")


def _labelled(frozen: Frozen, source: str, what: str, groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    _, _, labels = image_sources(source)
    if labels is None:
        raise click.UsageError(f"{what} '{source}' has no dataset.json labels; the probes need them (make the zip with "
                               "python -m common.data.tool --labels-from-subdirs, or write dataset.json)")
    pixels, _ = load_images(source, frozen.resolution)
    return probes.features(frozen.codes(pixels), groups), labels


@main.command()
@encoder_option
@click.option("--train", "train_set", required=True, help="Labelled zip/folder the probe is fit on (the gallery "
              "for retrieval).")
@click.option("--test", "test_set", required=True, help="Labelled zip/folder it is scored on (the queries).")
@click.option("--task", type=click.Choice(["linear", "ridge", "retrieval"]), default="linear", show_default=True)
@click.option("--groups", default=GROUP_NAMES, show_default=True, help="Code groups used as features.")
@click.option("--kind", type=click.Choice(["ridge", "logistic"]), default="logistic", show_default=True,
              help="Linear classifier of --task linear.")
@click.option("--alpha", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Regularisation (ridge alpha, or logistic C).")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="Retrieval: precision@k.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")
@device_option
def probe(encoder: str, train_set: str, test_set: str, task: str, groups: str, kind: str, alpha: float, k: int,
          as_json: bool, device: str | None) -> None:
    """Linear classification, ridge regression or retrieval on frozen GH-Feat."""
    chosen = _groups(groups)
    with user_errors():
        frozen = _open(encoder, device)
        train_x, train_y = _labelled(frozen, train_set, "--train", chosen)
        test_x, test_y = _labelled(frozen, test_set, "--test", chosen)
        integer = train_y.dtype == np.int64 and test_y.dtype == np.int64
        if task in ("linear", "retrieval") and not integer:
            raise click.UsageError(f"--task {task} needs class-index labels; these are number lists (use --task ridge)")
        if task == "ridge" and integer:
            train_y, test_y = train_y[:, None].astype(np.float64), test_y[:, None].astype(np.float64)
        if task == "linear":
            result = {"accuracy": probes.linear_probe(train_x, train_y, test_x, test_y, kind, alpha)}
        elif task == "ridge":
            result = probes.ridge_regression(train_x, train_y, test_x, test_y, alpha)
        else:
            result = {f"precision@{k}": probes.retrieval(test_x, test_y, train_x, train_y, min(k, len(train_x)))}
    result = {"task": task, "groups": chosen, **result}
    click.echo(json.dumps(result) if as_json else "  ".join(f"{key} {value}" for key, value in result.items()))


@main.command()
@encoder_option
@click.option("--images", required=True, help="Image list .txt, folder or zip.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG: inputs above reconstructions.")
@click.option("--limit", type=click.IntRange(min=1), default=16, show_default=True)
@device_option
def reconstruct(encoder: str, images: str, out: str, limit: int, device: str | None) -> None:
    """Encode and decode images; print the pixel MSE in [-1, 1] and write the pairs."""
    with user_errors():
        frozen = _open(encoder, device)
        pixels, _ = load_images(images, frozen.resolution, limit)
        decoded = frozen.decode([torch.from_numpy(c) for c in frozen.codes(pixels)])
        mse = float(((decoded.astype(np.float64) - pixels) / 127.5).__pow__(2).mean())
        _save_png(out, np.concatenate([pixels, decoded]), len(pixels), frozen.resolution)
    click.echo(f"reconstruction MSE {mse:.4f} ([-1, 1] scale) over {len(pixels)} images; pairs in {out}")


@main.command()
@encoder_option
@click.option("--images", required=True, help="Image list .txt, folder or zip (the first --limit are used).")
@click.option("--groups", default="fine", show_default=True, help="Groups taken from the column image.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--limit", type=click.IntRange(min=2), default=5, show_default=True)
@device_option
def mix(encoder: str, images: str, groups: str, out: str, limit: int, device: str | None) -> None:
    """Style mixing: row image A's codes with column image B's --groups swapped in (first row/column: inputs)."""
    chosen = _groups(groups)
    with user_errors():
        frozen = _open(encoder, device)
        pixels, _ = load_images(images, frozen.resolution, limit)
        codes = [torch.from_numpy(c) for c in frozen.codes(pixels)]
        n = len(pixels)
        cells = [np.full_like(pixels[:1], 255), pixels]
        for a in range(n):
            rows = [[c[a].expand(n, -1) for c in codes], codes]
            cells += [pixels[a : a + 1], frozen.decode(probes.swap_groups(rows[0], rows[1], chosen))]
        _save_png(out, np.concatenate(cells), n + 1, frozen.resolution)
    click.echo(f"style mixing of {n} images ({'+'.join(chosen)} from the columns) in {out}")


def _box(text: str) -> tuple[int, int, int, int]:
    try:
        top, left, height, width = (int(v) for v in text.split(","))
    except ValueError:
        raise click.UsageError(f"--box is TOP,LEFT,HEIGHT,WIDTH in pixels, got {text!r}") from None
    return top, left, height, width


@main.command()
@encoder_option
@click.option("--a", "image_a", required=True, help="Image edited.")
@click.option("--b", "image_b", required=True, help="Image the region comes from.")
@click.option("--box", required=True, help="TOP,LEFT,HEIGHT,WIDTH of the region, at the encoder's resolution.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@device_option
def edit(encoder: str, image_a: str, image_b: str, box: str, out: str, device: str | None) -> None:
    """Local editing: paste B's region into A, encode and decode (G harmonises the paste)."""
    region = _box(box)
    with user_errors():
        frozen = _open(encoder, device)
        size = frozen.resolution
        top, left, height, width = region
        if min(region) < 0 or height < 1 or width < 1 or top + height > size or left + width > size:
            raise click.UsageError(f"--box {box} is not inside the {size}x{size} image")
        pair = np.concatenate([load_images(p, size)[0] for p in (image_a, image_b)])
        pasted = probes.paste_edit(torch.from_numpy(pair[:1]), torch.from_numpy(pair[1:]), region).numpy()
        decoded = frozen.decode([torch.from_numpy(c) for c in frozen.codes(pasted)])
        _save_png(out, np.concatenate([pair, pasted, decoded]), 4, size)
    click.echo(f"A, B, the paste and its GH-Feat reconstruction in {out}")


if __name__ == "__main__":
    main()
