"""``python -m procA.eval --cfg CFG --ckpt RUN/model.pt [--single-scale]``: target val mIoU and per-class IoU.

Default: the official test.py protocol, multi-scale {0.5 ... 1.75} x flip (``eval.scales``/``eval.flip``), which the
paper's tables and the released logs use; ``--single-scale`` is the training-time protocol (README: 55.1 / 52.0).
SYNTHIA configs (16 classes) also print the 13-class mIoU*.
"""

from __future__ import annotations

import click

from common import dist
from common.cli import common_options, setup_run, user_errors
from common.metrics.segmentation import segmentation_scores
from common.report import markdown_table
from procA.config import ProCAConfig
from procA.evaluate import evaluate
from procA.labels import CLASSES_16, CLASSES_19, SYNTHIA_13_OF_16
from procA.synthetic import CLASSES as SYNTHETIC_CLASSES
from procA.training import build_model, val_batches


def class_names(cfg: ProCAConfig) -> tuple[str, ...]:
    if cfg.data.source == "synthetic":
        return SYNTHETIC_CLASSES
    return CLASSES_16 if cfg.model.num_classes == 16 else CLASSES_19


@click.command()
@common_options
@click.option("--ckpt", required=True, type=click.Path(exists=True, dir_okay=False), help="A procA model.pt.")
@click.option("--single-scale", is_flag=True, help="Scale 1.0 without flip (the training-time protocol).")
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None, ckpt: str, single_scale: bool) -> None:
    """Evaluate a model on the target val set."""
    setup = setup_run(ProCAConfig, "procA", cfg, overrides, outdir, resume, seed, device)
    c = setup.cfg
    scales, flip = ((1.0,), False) if single_scale else (c.eval.scales, c.eval.flip)
    with user_errors():
        model = build_model(c, ckpt, setup.info.device)
        matrix = evaluate(model, val_batches(c, c.eval.batch_size), c.model.num_classes, setup.info.device,
                          scales, flip)
    scores = segmentation_scores(matrix.hist, class_names=class_names(c))
    rows = [[name, 100 * iou] for name, iou, _ in scores["per_class"]]
    dist.print0(markdown_table(["class", "IoU"], rows, "{:.2f}"))
    line = f"mIoU {100 * scores['mIoU']:.2f}"
    if c.model.num_classes == 16 and c.data.source != "synthetic":
        line += f", mIoU* (13 classes) {100 * segmentation_scores(matrix.hist, classes=SYNTHIA_13_OF_16)['mIoU']:.2f}"
    dist.print0(f"done: {line} ({'single-scale' if single_scale else f'scales {list(scales)}, flip {flip}'})")
    dist.cleanup()


if __name__ == "__main__":
    main()
