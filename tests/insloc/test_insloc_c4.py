"""InsLoc's C4 variant (spec insloc.md §2.7): the box RoIAligned on res4, res5 as the RoI head, one level and one
queue; its sizes; the official ``convert_pretrained.py --c4`` names (318, checked against the script: README); the
torchvision trunk export; the strict import of official C4 checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch
from click.testing import CliRunner
from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2
from torchvision.ops import box_iou, roi_align

from common.checkpoint import CheckpointError
from common.config import ConfigError, load_config
from insloc.config import InsLocConfig, config_path
from insloc.export import detectron2_checkpoint, main, mmdet_state_dict, read_official
from insloc.insloc import InsLoc, PretextConfig
from insloc.model import InsLocC4
from insloc.training import build_model


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sizes_and_the_c4_row():
    with torch.device("meta"):
        model = InsLocC4()
        cfg = load_config(InsLocConfig, config_path("c4_200ep"))
        whole = build_model(cfg)
    # trunk to res4 + res5 as the RoI head = torchvision's ResNet-50 without fc
    assert _count(model.backbone) == 8_543_296 and _count(model.shared_head) == 14_964_736
    assert _count(model.backbone) + _count(model.shared_head) == 23_508_032
    assert _count(model.head) == 4_458_624 and _count(model) == 27_966_656  # the chosen head: fc 2,048, 128-d
    assert (cfg.model.roi_size, cfg.model.anchor_stride, cfg.optim.lr, cfg.model.queue_size) == (14, 16, 0.03, 65536)
    assert whole.queues.shape == (1, 128, 65536) and _count(whole) == 2 * 27_966_656
    with pytest.raises(ConfigError, match="box_aug_levels has 4 entries; neck c4 pools 1"):
        load_config(InsLocConfig, config_path("c4_200ep"), ["model.box_aug_levels=[false, false, false, true]"])


def test_roi_align_on_res4_then_res5_averaged():
    torch.manual_seed(0)
    model = InsLocC4(roi_size=14, fc=32, dim=16, block="basic", layers=(1, 1, 1, 1), width=8).eval()
    images, boxes = torch.randn(2, 3, 128, 128), torch.tensor([[8.0, 16.0, 100.0, 90.0], [0.0, 0.0, 128.0, 128.0]])
    seen = {}
    model.shared_head.layer4.register_forward_pre_hook(lambda _, args: seen.update(rois=args[0]))
    model.head.fcs[0].register_forward_pre_hook(lambda _, args: seen.update(pooled=args[0]))
    with torch.no_grad():
        out = model(images, [boxes])
        res4 = model.backbone(images)["c4"]
        expected = roi_align(res4, [boxes[:1], boxes[1:]], 14, 1 / 16, 0, aligned=True)
        res5 = model.shared_head.layer4(expected)
    assert res4.shape[-1] == 128 // 16 and res5.shape[-2:] == (7, 7)
    assert torch.equal(seen["rois"], expected) and torch.allclose(seen["pooled"], res5.mean(dim=(2, 3)))
    assert out.shape == (1, 2, 16) and torch.allclose(out.norm(dim=2), torch.ones(1, 2))


def test_one_level_one_queue_and_the_jittered_query_box():
    torch.manual_seed(0)
    model = InsLoc(InsLocC4(roi_size=4, fc=16, dim=8, block="basic", layers=(1, 1, 1, 1), width=8),
                   PretextConfig(queue_size=8, box_aug_levels=(True,)), dim=8)
    gt = torch.tensor([[4.0, 8.0, 60.0, 50.0], [10.0, 0.0, 64.0, 64.0]])
    (jittered,) = model.query_boxes(gt, (64, 64), torch.Generator().manual_seed(0))
    assert not torch.equal(jittered, gt) and (box_iou(jittered, gt).diagonal() > 0.5).all()
    loss, log = model(torch.randn(2, 3, 64, 64), gt, torch.randn(2, 3, 64, 64), gt, torch.Generator().manual_seed(0))
    loss.backward()
    assert set(log) == {"loss_c4", "acc_c4"} and model.queues.shape == (1, 8, 8) and int(model.queue_ptr) == 2
    assert all(p.grad is not None for p in model.encoder_q.shared_head.parameters())
    with pytest.raises(ValueError, match="box_aug_levels names 4 levels; the encoder pools 1"):
        InsLoc(InsLocC4(fc=16, dim=8, block="basic", layers=(1, 1, 1, 1), width=8), PretextConfig(queue_size=8), 8)


@pytest.fixture(scope="module")
def official_c4(tmp_path_factory):
    """A C4 checkpoint in the model zoo's layout (mmcv ``save_checkpoint``: meta, state_dict, optimizer)."""
    torch.manual_seed(0)
    model = InsLoc(InsLocC4(), PretextConfig(queue_size=64, box_aug_levels=(True,)))
    state = mmdet_state_dict(model.encoder_q.state_dict(), model.encoder_k.state_dict(), model.queues,
                             model.queue_ptr)
    path = tmp_path_factory.mktemp("zoo") / "insloc_c4_200ep.pth"
    torch.save({"meta": {"mmdet_version": "2.1.0", "epoch": 200}, "state_dict": state,
                "optimizer": {"state": {}, "param_groups": []}}, path)
    return path, model, state


def test_detectron2_names_of_the_official_c4_conversion(official_c4, tmp_path):
    path, model, state = official_c4
    assert "roi_head.shared_head.layer4.2.conv3.weight" in state and "roi_head_k.shared_head.layer4.0.bn1.bias" in state
    d2 = detectron2_checkpoint(state)["model"]
    # convert_pretrained.py --c4 gives these 318 names and arrays on such a file (checked against it: README)
    assert len(d2) == 318 and sum(k.startswith("roi_heads.res5.") for k in d2) == 60
    for name in ("backbone.stem.conv1.weight", "backbone.stem.conv1.norm.running_var",
                 "backbone.res2.0.shortcut.weight", "backbone.res4.5.conv3.norm.bias",
                 "roi_heads.res5.0.shortcut.norm.weight", "roi_heads.res5.2.conv3.weight"):
        assert name in d2, name
    assert not any(k.startswith(("backbone.bottom_up", "roi_heads.box_head")) or "fc" in k for k in d2)
    result = CliRunner().invoke(main, ["--ckpt", str(path), "--to", "detectron2", "--out", str(tmp_path / "c4.pkl")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "c4.pkl", "rb") as f:
        assert set(pickle.load(f)["model"]) == set(d2)


def test_c4_import_reads_the_trunk_and_exports_it_to_torchvision(official_c4, tmp_path):
    path, model, _ = official_c4
    trunk = read_official(path)
    query = model.encoder_q.state_dict()
    assert set(trunk) == {k for k in query if not k.startswith("head.")}
    assert all(torch.equal(trunk[k], query[k]) for k in trunk)
    result = CliRunner().invoke(main, ["--ckpt", str(path), "--to", "torchvision", "--out", str(tmp_path / "tv.pth")])
    assert result.exit_code == 0, result.output
    detector = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=3)
    missing, unexpected = detector.load_state_dict(torch.load(tmp_path / "tv.pth", weights_only=True), strict=False)
    assert not unexpected and not any(k.startswith("backbone.body.") for k in missing)
    assert torch.equal(detector.state_dict()["backbone.body.layer4.1.conv2.weight"],
                       query["shared_head.layer4.1.conv2.weight"])
    broken = torch.load(path, weights_only=True)
    del broken["state_dict"]["roi_head.shared_head.layer4.0.downsample.1.running_var"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="not an InsLoc C4 checkpoint: it lacks roi_head.shared_head.layer4.0"):
        read_official(tmp_path / "broken.pth")
