"""InsLoc export / import on checkpoints in the official layout (mmcv's ``{'meta', 'state_dict', 'optimizer'}`` with
``InsLocFPN``'s names): detectron2 names of the official converter, torchvision's FasterRCNN names, strict import."""

from __future__ import annotations

import pickle

import pytest
import torch
from click.testing import CliRunner
from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

from common.checkpoint import CheckpointError
from insloc.export import detectron2_checkpoint, main, mmdet_state_dict, read_official, torchvision_state_dict
from insloc.insloc import InsLoc, PretextConfig
from insloc.model import InsLocFPN


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A checkpoint written the way mmcv's save_checkpoint writes an InsLocFPN run (model zoo layout)."""
    torch.manual_seed(0)
    model = InsLoc(InsLocFPN(), PretextConfig(queue_size=64))
    state = mmdet_state_dict(model.encoder_q.state_dict(), model.encoder_k.state_dict(), model.queues,
                             model.queue_ptr)
    path = tmp_path_factory.mktemp("zoo") / "insloc_fpn_200ep.pth"
    torch.save({"meta": {"mmdet_version": "2.1.0", "config": "model = dict(type='InsLocFPN')", "epoch": 200,
                         "iter": 1000, "CLASSES": None},
                "state_dict": state,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9, "params": [0, 1]}]}}, path)
    return path, model, state


def test_official_names_and_detectron2_conversion(official):
    _, model, state = official
    assert "neck.lateral_convs.0.bn.running_var" in state and "roi_head_k.bbox_head.fc_cls.weight" in state
    assert "roi_head.bbox_head.shared_convs.3.conv.weight" in state and state["queues"].shape == (4, 128, 64)
    d2 = detectron2_checkpoint(state)["model"]
    # the official convert_pretrained.py (FPN mode) gives these 394 names on such a file (checked against it: README)
    assert len(d2) == 394
    for name in ("backbone.bottom_up.stem.conv1.weight", "backbone.bottom_up.stem.conv1.norm.running_mean",
                 "backbone.bottom_up.res5.2.conv3.norm.bias", "backbone.bottom_up.res2.0.shortcut.norm.weight",
                 "backbone.fpn_lateral2.weight", "backbone.fpn_output5.norm.running_var",
                 "roi_heads.box_head.conv4.norm.weight", "roi_heads.box_head.fc1.bias",
                 "roi_head.bbox_head.shared_fcs.1.weight"):  # fc2 passes through unrenamed, as officially
        assert name in d2, name
    assert not any("fc_cls" in k or "_k." in k or "queue" in k for k in d2)


def test_import_is_strict_and_exact(official, tmp_path):
    path, model, _ = official
    fresh = InsLocFPN()
    fresh.load_state_dict(read_official(path))
    for name, value in model.encoder_q.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    broken = torch.load(path, weights_only=True)
    del broken["state_dict"]["neck.fpn_convs.2.conv.weight"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="lacks neck.fpn_convs.2.conv.weight"):
        read_official(tmp_path / "broken.pth")


def test_torchvision_export_loads_into_fasterrcnn_v2(official, tmp_path):
    path, model, _ = official
    result = CliRunner().invoke(main, ["--ckpt", str(path), "--to", "torchvision", "--out", str(tmp_path / "tv.pth")])
    assert result.exit_code == 0, result.output
    exported = torch.load(tmp_path / "tv.pth", weights_only=True)
    assert len(exported) == len(torchvision_state_dict(model.encoder_q.state_dict()))
    detector = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=3)
    missing, unexpected = detector.load_state_dict(exported, strict=False)
    assert unexpected == []
    assert all(k.startswith(("rpn.", "roi_heads.box_predictor.")) for k in missing), missing
    assert torch.equal(detector.roi_heads.box_head[5].weight, model.encoder_q.head.fcs[0].weight)
    assert torch.equal(detector.backbone.fpn.layer_blocks[3][1].running_var,
                       model.encoder_q.neck.layer_blocks[3][1].running_var)


def test_detectron2_cli_and_bad_input(official, tmp_path):
    path, _, state = official
    out = tmp_path / "d2.pkl"
    result = CliRunner().invoke(main, ["--ckpt", str(path), "--to", "detectron2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, "rb") as f:
        saved = pickle.load(f)
    assert saved["matching_heuristics"] is True and set(saved["model"]) == set(detectron2_checkpoint(state)["model"])
    again = CliRunner().invoke(main, ["--ckpt", str(path), "--to", "detectron2", "--out", str(out)])
    assert again.exit_code != 0 and "exists" in again.output
    (tmp_path / "text.pth").write_text("no")
    bad = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "text.pth"), "--to", "torchvision", "--out",
                                    str(tmp_path / "x.pth")])
    assert bad.exit_code != 0 and "not a PyTorch file" in bad.output and not (tmp_path / "x.pth").exists()
