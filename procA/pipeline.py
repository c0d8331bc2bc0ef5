"""The five-stage ProCA pipeline (spec §2.1) as one driver; each stage also has its own CLI.

    python -m procA.pipeline --cfg procA/configs/gta5.yaml --outdir runs/procA/gta5 \\
        --set model.imagenet_weights=resnet101-5d3b4d8f.pth --set data.source_root=datasets/gtav \\
        --set data.target_root=datasets/cityscapes
    torchrun --nproc_per_node=4 -m procA.pipeline --cfg ... --outdir runs/procA/gta5     # 4 GPUs as the official

Stages write ``<outdir>/1_source_only``, ``2_prototypes``, ``3_proca``, ``4_pseudo_labels``, ``5_self_training``.
Re-running the same command skips finished stages and resumes an interrupted one from its latest snapshot. Stage 5
starts from ImageNet weights, not from the ProCA model (official script, spec §7.3). The final model of every
training stage is evaluated with the official multi-scale + flip test; ``--select best`` evaluates each stage's
best-on-validation ``model_best.pt`` instead (the official model_best.pth behind the paper's numbers, selected on
the val set itself). The selection only changes what is evaluated: every stage starts from the previous stage's
final model either way (official: stages 2-3 load stage 1's model_current.pth, stage 4 stage 3's model_best.pth).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import torch

from common import dist
from common.checkpoint import CheckpointManager, atomic_save
from common.cli import setup_run, user_errors
from common.metrics.segmentation import segmentation_scores
from procA.config import ProCAConfig, config_path
from procA.eval import SELECT
from procA.evaluate import evaluate
from procA.init_prototypes import init_prototypes
from procA.pseudo_label import LABELS_DIR, generate_pseudo_labels
from procA.training import BEST_MODEL_FILE, MODEL_FILE, PROTOTYPES_FILE, Stage, build_model, train_stage, val_batches

STAGE_DIRS = ("1_source_only", "2_prototypes", "3_proca", "4_pseudo_labels", "5_self_training")
TRAINING_DIRS = {"source_only": STAGE_DIRS[0], "proca": STAGE_DIRS[2], "self_training": STAGE_DIRS[4]}


def check_best_models(outdir: Path) -> None:
    """``--select best`` on an existing pipeline folder: every finished training stage must have its model_best.pt."""
    for name in TRAINING_DIRS.values():
        run_dir = outdir / name
        if (run_dir / MODEL_FILE).is_file() and not (run_dir / BEST_MODEL_FILE).is_file():
            raise click.ClickException(
                f"--select best: {run_dir} finished without a {BEST_MODEL_FILE} (an older version's run): "
                "use --select final, or remove that stage folder to retrain it"
            )


def with_values(cfg: ProCAConfig, section: str, **values: object) -> ProCAConfig:
    """``cfg`` with some keys of one section replaced (e.g. a stage's ``init``)."""
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **values)})


def run_training(cfg: ProCAConfig, stage: Stage, run_dir: Path, device: torch.device) -> Path:
    """``train_stage`` unless ``run_dir`` already holds its model; resumes from the latest snapshot if any."""
    if (run_dir / MODEL_FILE).is_file():
        return run_dir / MODEL_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    latest = CheckpointManager(run_dir).latest()
    return train_stage(cfg, stage, run_dir, device, resume=latest)


def run_pipeline(cfg: ProCAConfig, outdir: Path, device: torch.device) -> dict[str, Path]:
    """All five stages into ``outdir``; returns the model of each training stage."""
    dirs = [outdir / name for name in STAGE_DIRS]
    source_model = run_training(cfg, "source_only", dirs[0], device)
    protos = dirs[1] / PROTOTYPES_FILE
    if not protos.is_file():
        state = init_prototypes(cfg, str(source_model), device)
        if dist.is_main():
            atomic_save(state, protos)
        dist.barrier()
    cfg_proca = with_values(with_values(cfg, "proca", init=str(source_model)), "contrast", prototypes=str(protos))
    proca_model = run_training(cfg_proca, "proca", dirs[2], device)
    labels = dirs[3] / LABELS_DIR
    if not (dirs[3] / "thresholds.npy").is_file():
        generate_pseudo_labels(cfg, str(proca_model), labels, device)
    cfg_ssl = with_values(cfg, "pseudo_label", labels_dir=str(labels))
    ssl_model = run_training(cfg_ssl, "self_training", dirs[4], device)
    return {"source_only": source_model, "proca": proca_model, "self_training": ssl_model}


@click.command()
@click.option("--cfg", "cfg", type=click.Path(dir_okay=False), required=True, help="YAML config (one table row).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--outdir", type=click.Path(file_okay=False), required=True, help="Pipeline folder (re-use resumes).")
@click.option("--seed", type=int, default=None, help="Random seed (overrides the config's).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N [auto].")
@SELECT
def main(cfg: str, overrides: tuple[str, ...], outdir: str, seed: int | None, device: str | None,
         select: str) -> None:
    """Run source-only -> prototypes -> ProCA -> pseudo-labels -> self-training, then the multi-scale test."""
    if select == "best":  # before anything is written
        check_best_models(Path(outdir))
    setup = setup_run(ProCAConfig, "procA", config_path(cfg), overrides, str(Path(outdir) / "runs"), None, seed, device)
    c = setup.cfg
    with user_errors():
        models = run_pipeline(c, Path(outdir), setup.info.device)
        for name, path in models.items():
            path = path.parent / BEST_MODEL_FILE if select == "best" else path
            model = build_model(c, str(path), setup.info.device)
            matrix = evaluate(model, val_batches(c, c.eval.batch_size), c.model.num_classes, setup.info.device,
                              c.eval.scales, c.eval.flip)
            dist.print0(f"{name}: mIoU {100 * segmentation_scores(matrix.hist)['mIoU']:.2f} "
                        f"(multi-scale + flip, {select} model {path.name})")
    dist.print0(f"done: pipeline in {outdir}")
    dist.cleanup()


if __name__ == "__main__":
    main()
