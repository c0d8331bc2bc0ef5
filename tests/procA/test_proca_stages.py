"""Every stage end to end on a shrunken tiny preset; exact resume of the ProCA stage; one-line user errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from common.checkpoint import load_checkpoint
from common.config import load_config
from procA import training
from procA.config import ProCAConfig
from procA.data import build_dataset
from procA.eval import main as eval_main
from procA.init_prototypes import init_prototypes
from procA.pipeline import main as pipeline_main
from procA.pipeline import run_pipeline
from procA.pseudo_label import generate_pseudo_labels
from procA.train_proca import main as train_proca_main
from procA.train_src import main as train_src_main
from procA.training import build_model, save_model, train_stage

TINY = Path(__file__).resolve().parents[2] / "procA" / "configs" / "tiny.yaml"
SHRINK = [
    "data.synthetic={size: 32, num_source: 12, num_target: 12, num_val: 6}",
    "data.source_size=[32, 32]", "data.target_size=[32, 32]", "data.test_size=[32, 32]",
    "model.base_width=4", "eval.scales=[1.0]", "eval.flip=false", "eval.batch_size=6",
    "source_only.iters=3", "source_only.eval_every=2", "source_only.snapshot_every=2",
    "proca.iters=4", "proca.max_iters=8", "proca.eval_every=2", "proca.snapshot_every=2",
    "self_training.iters=2",
]


def _cfg(*extra):
    return load_config(ProCAConfig, TINY, [*SHRINK, *extra])


def test_pipeline_runs_every_stage(tmp_path):
    cfg = _cfg()
    models = run_pipeline(cfg, tmp_path, torch.device("cpu"))
    assert all(p.is_file() for p in models.values())
    init = torch.load(tmp_path / "2_prototypes" / "prototypes.pt", weights_only=True)
    assert init["feat"]["Proto"].shape == (6, 4 * 8 * 4) and init["out"]["Proto"].shape == (6, 6)
    # 12 source images, 32x32 -> 4x4 feature grid, every pixel labelled: Amount counts exactly the pixels fed
    assert init["feat"]["Amount"].sum().item() == 12 * 16
    final = torch.load(tmp_path / "3_proca" / "prototypes.pt", weights_only=True)
    grown = final["feat"]["Amount"].sum().item() - init["feat"]["Amount"].sum().item()
    source_px = 4 * 4 * 16  # 4 iterations x 4 source images x 16 pixels, all valid
    assert source_px <= grown <= 2 * source_px  # plus the confident target pixels
    labels = sorted((tmp_path / "4_pseudo_labels" / "pseudo_labels").glob("*.png"))
    assert len(labels) == 12
    values = np.unique(np.concatenate([np.array(PIL.Image.open(p)).ravel() for p in labels]))
    assert set(values.tolist()) <= {0, 1, 2, 3, 4, 5, 255}
    thresholds = np.load(tmp_path / "4_pseudo_labels" / "thresholds.npy")
    assert thresholds.shape == (6,) and (thresholds <= 0.9).all()
    records = [json.loads(line) for line in open(tmp_path / "3_proca" / "stats.jsonl")]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss/feat"]) and np.isfinite(r["loss/out"]) for r in records)
    assert "val/mIoU" in records[1] and "val/mIoU" not in records[0]
    # re-running the driver skips finished stages (no new snapshot, same model file)
    stamp = models["proca"].stat().st_mtime_ns
    run_pipeline(cfg, tmp_path, torch.device("cpu"))
    assert models["proca"].stat().st_mtime_ns == stamp


def test_proca_resume_gives_identical_weights(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cfg = _cfg("source_only.iters=1")
    source_model = train_stage(cfg, "source_only", src, torch.device("cpu"))
    torch.save(init_prototypes(cfg, str(source_model), torch.device("cpu")), tmp_path / "p.pt")
    cfg = _cfg(f"proca.init={source_model}", f"contrast.prototypes={tmp_path / 'p.pt'}",
               "proca.strong_aug=true")  # augmentation draws from the RNG, which resume must restore
    straight, interrupted, resumed = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (straight, interrupted, resumed):
        d.mkdir()
    train_stage(cfg, "proca", straight, torch.device("cpu"))  # each fresh stage seeds itself from cfg.seed
    train_stage(cfg, "proca", interrupted, torch.device("cpu"))
    torch.manual_seed(123)  # the resumed process starts from another RNG state; the snapshot restores it
    train_stage(cfg, "proca", resumed, torch.device("cpu"), resume=interrupted / "snapshot-000000002.pt")
    a = load_checkpoint(straight / "model.pt")["modules"]["model"]
    b = load_checkpoint(resumed / "model.pt")["modules"]["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa = torch.load(straight / "prototypes.pt", weights_only=True)
    pb = torch.load(resumed / "prototypes.pt", weights_only=True)
    assert torch.equal(pa["feat"]["Proto"], pb["feat"]["Proto"]) and torch.equal(pa["out"]["Amount"],
                                                                                  pb["out"]["Amount"])
    # and the resumed half really trained: weights differ from the snapshot it started from
    snap = load_checkpoint(interrupted / "snapshot-000000002.pt")["modules"]["model"]
    assert not torch.equal(snap["classifier.branches.0.weight"], b["classifier.branches.0.weight"])


@pytest.mark.parametrize(
    ("main", "extra", "message"),
    [
        (train_proca_main, [], "needs contrast.prototypes"),
        (train_proca_main, ["--set", "contrast.prototypes=/nonexistent/p.pt"], "no file at /nonexistent/p.pt"),
        (train_src_main, ["--set", "contrast.tau_scale=1"], "unknown config key 'tau_scale'"),
        (train_src_main, ["--set", "data.source=gta5", "--set", "data.source_root=/nowhere"],
         "GTA5 folder not found: /nowhere; expected layout"),
    ],
)
def test_user_errors_are_one_line(tmp_path, main, extra, message):
    result = CliRunner().invoke(main, ["--cfg", str(TINY), "--outdir", str(tmp_path), *extra])
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output and not isinstance(result.exception, (AssertionError, RuntimeError))


def test_pseudo_labels_upsample_logits_once_to_the_full_image(tmp_path):
    cfg = _cfg("data.target_size=[24, 24]")  # 32 px scenes resized to 24: logits 3x3 -> labels 32x32
    model = build_model(cfg, "", torch.device("cpu"))
    with torch.no_grad():
        for branch in model.classifier.branches:
            branch.weight.mul_(300.0)  # confident, spatially varied predictions
    path = save_model(model, tmp_path / "model.pt", 0, cfg)
    thresholds = generate_pseudo_labels(cfg, str(path), tmp_path / "pl", torch.device("cpu"))
    data = build_dataset(cfg.data, "target_train", 6, seed=cfg.seed)
    model.eval()
    kept = 0
    for i, name in enumerate(data.names):
        with torch.no_grad():  # official pseudo_label.py: inference() against the full-size label, no flip
            logits = model(data[i][0][None])[1]
            probs = F.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=True).softmax(dim=1)[0]
        confidence, prediction = probs.max(dim=0)
        expected = torch.where(confidence >= torch.as_tensor(thresholds, dtype=confidence.dtype)[prediction],
                               prediction, torch.full_like(prediction, 255))
        written = np.array(PIL.Image.open(tmp_path / "pl" / f"{name}.png"))
        assert np.array_equal(written, expected.numpy()), name
        kept += int((expected != 255).sum())
    assert 0 < kept < 12 * 32 * 32


@pytest.mark.parametrize(("scores", "best_step"), [([70.0, 50.0, 60.0, 40.0], 1), ([50.0, 70.0, 60.0, 40.0], 2)])
def test_best_model_is_logged_saved_and_survives_resume(tmp_path, monkeypatch, scores, best_step):
    # best before the snapshot at 2 (its weights travel in the snapshot) or at it (the snapshot's own weights)
    cfg = _cfg("source_only.iters=4", "source_only.eval_every=1", "source_only.snapshot_every=2",
               "data.class_balanced=true")  # and resume stays exact with the class-balanced source list

    def run(values, run_dir, resume=None):
        run_dir.mkdir()
        values = iter(values)
        monkeypatch.setattr(training, "val_miou", lambda *args: next(values))
        train_stage(cfg, "source_only", run_dir, torch.device("cpu"), resume=resume)

    straight, interrupted, resumed = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run(scores, straight)
    run(scores, interrupted)
    torch.manual_seed(123)
    run(scores[2:], resumed, resume=interrupted / "snapshot-000000002.pt")  # a new dir: nothing on disk to reuse
    records = [json.loads(line) for line in open(straight / "stats.jsonl")]
    assert [r["val/mIoU"] for r in records] == scores
    assert [r["val/best_mIoU"] for r in records] == [max(scores[: i + 1]) for i in range(4)]
    a, b = load_checkpoint(straight / "model_best.pt"), load_checkpoint(resumed / "model_best.pt")
    assert a["step"] == b["step"] == best_step and a["extra"]["val/mIoU"] == b["extra"]["val/mIoU"] == 70.0
    wa, wb = a["modules"]["model"], b["modules"]["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    final = load_checkpoint(straight / "model.pt")["modules"]["model"]
    resumed_final = load_checkpoint(resumed / "model.pt")["modules"]["model"]
    assert all(torch.equal(final[k], resumed_final[k]) for k in final)
    key = "classifier.branches.0.weight"
    assert not torch.equal(final[key], wa[key])  # the best is not the final model
    snap = load_checkpoint(interrupted / "snapshot-000000002.pt")
    assert snap["extra"]["best"]["step"] == best_step
    assert (snap["extra"]["best"]["model"] is None) == (best_step == 2)
    assert torch.equal(wa[key], snap["modules"]["model"][key]) == (best_step == 2)


def test_select_best_evaluates_model_best_and_refuses_without_it(tmp_path):
    run_dir = tmp_path / "src"
    run_dir.mkdir()
    train_stage(_cfg("source_only.iters=1"), "source_only", run_dir, torch.device("cpu"))
    args = ["--cfg", "tiny", *[a for s in SHRINK for a in ("--set", s)], "--outdir", str(tmp_path / "evals"),
            "--ckpt", str(run_dir / "model.pt"), "--single-scale", "--select", "best"]
    result = CliRunner().invoke(eval_main, args)
    assert result.exit_code == 0, result.output
    assert f"best model {run_dir / 'model_best.pt'}" in result.output.splitlines()[-1]
    shutil.rmtree(tmp_path / "evals")
    (run_dir / "model_best.pt").unlink()
    for main, extra in ((eval_main, args), (pipeline_main, ["--cfg", str(TINY), "--outdir", str(tmp_path),
                                                            "--select", "best"])):
        (tmp_path / "1_source_only").mkdir(exist_ok=True)
        shutil.copy(run_dir / "model.pt", tmp_path / "1_source_only" / "model.pt")
        result = CliRunner().invoke(main, extra)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code != 0 and len(errors) == 1 and "--select best" in errors[0], result.output
        assert "model_best.pt" in errors[0] and "Traceback" not in result.output
        assert not (tmp_path / "evals").exists() and not (tmp_path / "runs").exists()  # nothing written
