"""``ghfeat.eval`` (extract, probe, reconstruct, mix, edit) and ``ghfeat.reproduce --smoke`` end to end on a GH-Feat
run of the few-iteration test source GAN; bad inputs are one line and write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from common.config import load_config
from common.data.archive import write_image_archive
from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan
from ghfeat import eval as ghfeat_eval
from ghfeat import reproduce
from ghfeat.config import GHFeatConfig, config_path
from ghfeat.measure import labelled_shapes
from ghfeat.training import train_ghfeat


@pytest.fixture(scope="module")
def source() -> str:
    torch.set_num_threads(1)
    return str(pretrained_source_gan(SourceTraining(total_kimg=0.032)))


@pytest.fixture(scope="module")
def run(source, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ghfeat") / "run"
    cfg = load_config(GHFeatConfig, config_path("tiny"), [f"generator.path={source}", "data.num_images=64",
                                                           "train.batch=4", "train.total_kimg=0.008"])
    train_ghfeat(cfg, path)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("data")
    images, labels, targets = labelled_shapes(60, seed=9)
    nhwc = images.transpose(0, 2, 3, 1)
    paths = {
        "classes": write_image_archive(folder / "classes.zip", nhwc, labels["quadrant"]),
        "vectors": write_image_archive(folder / "vectors.zip", nhwc, targets.tolist()),
        "plain": write_image_archive(folder / "plain.zip", nhwc),
    }
    for i in range(2):
        Image.fromarray(nhwc[i]).save(folder / f"{i}.png")
        paths[f"png{i}"] = folder / f"{i}.png"
    return {k: str(v) for k, v in paths.items()}


def _invoke(*args):
    return CliRunner().invoke(ghfeat_eval.main, [str(a) for a in args])


def test_extract_reconstruct_mix_edit(run, data, tmp_path):
    result = _invoke("extract", "--encoder", run, "--images", data["plain"], "-o", tmp_path / "f")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "f" / "ghfeat.npy").shape == (60, 320 + 192 + 128)
    assert len((tmp_path / "f" / "image_list.txt").read_text().splitlines()) == 60
    result = _invoke("reconstruct", "--encoder", run, "--images", data["plain"], "--out", tmp_path / "r.png",
                     "--limit", 4)
    assert result.exit_code == 0 and "reconstruction MSE" in result.output, result.output
    assert Image.open(tmp_path / "r.png").size == (4 * 128 + 3, 2 * 128 + 1)  # 4x upscaled, separated cells
    result = _invoke("mix", "--encoder", run, "--images", data["plain"], "--out", tmp_path / "m.png", "--limit", 3,
                     "--groups", "middle,fine")
    assert result.exit_code == 0 and Image.open(tmp_path / "m.png").size == (4 * 129 - 1, 4 * 129 - 1)
    result = _invoke("edit", "--encoder", run, "--a", data["png0"], "--b", data["png1"], "--box", "8,8,16,16",
                     "--out", tmp_path / "e.png")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("task, key, labels", [("linear", "accuracy", "classes"), ("retrieval", "precision@5",
                                                                                   "classes"),
                                               ("ridge", "r2", "vectors"), ("ridge", "r2", "classes")])
def test_probe_tasks(run, data, task, key, labels):
    result = _invoke("probe", "--encoder", run, "--train", data[labels], "--test", data[labels], "--task", task,
                     "--json", "--groups", "coarse")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["task"] == task and out["groups"] == ["coarse"] and np.isfinite(out[key])


@pytest.mark.parametrize("args, needle", [
    (["probe", "--encoder", "RUN", "--train", "plain", "--test", "plain"], "has no dataset.json labels"),
    (["probe", "--encoder", "RUN", "--train", "vectors", "--test", "vectors"], "needs class-index labels"),
    (["probe", "--encoder", "RUN", "--train", "classes", "--test", "classes", "--groups", "fine,top"], "--groups"),
    (["extract", "--encoder", "missing", "--images", "plain", "-o", "OUT"], "does not exist"),
    (["extract", "--encoder", "RUN", "--images", "nowhere.zip", "-o", "OUT"], "does not exist"),
    (["edit", "--encoder", "RUN", "--a", "png0", "--b", "png1", "--box", "30,30,8,8", "--out", "OUT"],
     "not inside"),
    (["edit", "--encoder", "RUN", "--a", "png0", "--b", "png1", "--box", "1,2", "--out", "OUT"], "TOP,LEFT"),
    (["reconstruct", "--encoder", "DATA", "--images", "plain", "--out", "OUT"], "is not a GH-Feat snapshot"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, data, tmp_path, args, needle):
    out = tmp_path / "out"
    args = [run if a == "RUN" else data["plain"] if a == "DATA" else data.get(a, a) for a in args]
    result = _invoke(*[str(out) if a == "OUT" else a for a in args])
    assert result.exit_code != 0 and needle in result.output and "Traceback" not in result.output, result.output
    assert not out.exists()


def test_reproduce_smoke_writes_the_report(source, tmp_path):
    path = reproduce.run_tiny(tmp_path / "tiny", [0], workers=1, smoke=True, generator=source)
    text = path.read_text()
    assert text.index("Reconstruction and hierarchy") < text.index("Probes on frozen features")
    for name in ("curves.png", "reconstructions.png", "mixing.png", "results.json"):
        assert (tmp_path / "tiny" / name).is_file(), name
    record = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert reproduce.write_report(tmp_path / "tiny", record) == path  # --report-only


def test_budget_rule():
    assert reproduce.chosen_budget([(200, 0.2), (400, 0.1), (600, 0.097), (800, 0.09)]) == 400
    assert reproduce.chosen_budget([(200, 0.2), (400, 0.1), (600, 0.05)]) == 600
