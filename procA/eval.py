"""``python -m procA.eval --cfg CFG --ckpt RUN/model.pt [--single-scale] [--select best]``: target val mIoU.

Default: the official test.py protocol, multi-scale {0.5 ... 1.75} x flip (``eval.scales``/``eval.flip``), which the
paper's tables and the released logs use; ``--single-scale`` is the training-time protocol (README: 55.1 / 52.0).
SYNTHIA configs (16 classes) also print the 13-class mIoU*. ``--select best`` evaluates the ``model_best.pt`` beside
``--ckpt`` instead (best single-scale val mIoU during training, as the official ``model_best.pth`` behind the
paper's numbers: selected on the val set itself); the default is the final model.
"""

from __future__ import annotations

from pathlib import Path

import click

from common import dist
from common.cli import common_options, output_run, setup_run, user_errors
from common.config import config_rows
from common.logging import progress
from common.metrics.segmentation import segmentation_scores
from common.report import markdown_table
from procA.config import CONFIG_DIR, ProCAConfig, config_path
from procA.evaluate import evaluate
from procA.labels import CLASSES_16, CLASSES_19, SYNTHIA_13_OF_16
from procA.synthetic import CLASSES as SYNTHETIC_CLASSES
from procA.training import BEST_MODEL_FILE, build_model, val_batches

SELECT = click.option("--select", type=click.Choice(["final", "best"]), default="final", show_default=True,
                      help="The final model, or the best-on-validation model_best.pt of the same run (paper protocol).")


def selected_model(ckpt: str | Path, select: str) -> Path:
    """``ckpt`` itself (``final``) or the ``model_best.pt`` in its folder (``best``); a click error if absent."""
    if select == "final":
        return Path(ckpt)
    best = Path(ckpt).parent / BEST_MODEL_FILE
    if not best.is_file():
        raise click.ClickException(
            f"--select best: no {BEST_MODEL_FILE} beside {ckpt} (training stages write it at their evaluations; "
            "runs of older versions have none): use --select final"
        )
    return best


def class_names(cfg: ProCAConfig) -> tuple[str, ...]:
    if cfg.data.source == "synthetic":
        return SYNTHETIC_CLASSES
    return CLASSES_16 if cfg.model.num_classes == 16 else CLASSES_19


@click.command()
@common_options(rows=config_rows(CONFIG_DIR))
@click.option("--ckpt", required=True, type=click.Path(exists=True, dir_okay=False), help="A procA model.pt.")
@click.option("--single-scale", is_flag=True, help="Scale 1.0 without flip (the training-time protocol).")
@SELECT
def main(cfg: str | None, overrides: tuple[str, ...], outdir: str | None, resume: str | None, seed: int | None,
         device: str | None, ckpt: str, single_scale: bool, select: str) -> None:
    """Evaluate a model on the target val set."""
    model_path = selected_model(ckpt, select)  # before the run dir exists: a bad --select writes nothing
    setup = setup_run(ProCAConfig, "procA", config_path(cfg), overrides, outdir, resume, seed, device)
    c = setup.cfg
    scales, flip = ((1.0,), False) if single_scale else (c.eval.scales, c.eval.flip)
    with output_run(setup), user_errors():
        model = build_model(c, str(model_path), setup.info.device)
        batches = val_batches(c, c.eval.batch_size)
        batches = progress(batches, len(batches.dataset), "evaluating", "img", step=lambda batch: len(batch[0]))
        matrix = evaluate(model, batches, c.model.num_classes, setup.info.device, scales, flip)
    scores = segmentation_scores(matrix.hist, class_names=class_names(c))
    rows = [[name, 100 * iou] for name, iou, _ in scores["per_class"]]
    dist.print0(markdown_table(["class", "IoU"], rows, "{:.2f}"))
    line = f"mIoU {100 * scores['mIoU']:.2f}"
    if c.model.num_classes == 16 and c.data.source != "synthetic":
        line += f", mIoU* (13 classes) {100 * segmentation_scores(matrix.hist, classes=SYNTHIA_13_OF_16)['mIoU']:.2f}"
    protocol = "single-scale" if single_scale else f"scales {list(scales)}, flip {flip}"
    dist.print0(f"done: {line} ({protocol}; {select} model {model_path})")
    dist.cleanup()


if __name__ == "__main__":
    main()
