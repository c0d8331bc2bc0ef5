"""InsLoc's pretraining loop: epoch sampling, the per-epoch cosine, and a resumed run equal to an uninterrupted one
(both methods)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from common.checkpoint import capture, load_checkpoint, resolve_resume
from common.config import ConfigError, load_config
from insloc.config import InsLocConfig, config_names, config_path
from insloc.training import EpochSampler, build_model, learning_rate, train_insloc


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for i in range(8):
        folder = root / f"n{i % 2:08d}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    return root


def _cfg(images, *sets, row="fpn_200ep"):
    small = ["model.fpn_channels=8", "model.fc=16", "model.dim=8", "model.queue_size=8", "model.shuffle_chunks=2",
             "data.base_scale=64", "data.fore_scale=[32, 63]", "data.moco_size=32", "data.workers=0",
             f"data.path={images}", "train.batch=4", "train.epochs=2", "train.snapshot_every=2", "train.log_every=1"]
    if row == "c4_200ep":
        small = [s for s in small if not s.startswith("model.fpn_channels")] + ["model.roi_size=4"]
    return load_config(InsLocConfig, config_path(row), [*small, *sets])


def test_rows_are_the_official_defaults():
    assert set(config_names()) >= {"fpn_200ep", "fpn_400ep", "moco_v2_200ep"}
    cfg = load_config(InsLocConfig, config_path("fpn_200ep"))
    assert (cfg.optim.lr, cfg.optim.nesterov, cfg.optim.weight_decay, cfg.train.batch) == (0.03, True, 1e-4, 256)
    assert (cfg.model.queue_size, cfg.model.temperature, cfg.model.momentum) == (65536, 0.2, 0.999)
    assert cfg.model.box_aug_levels == [False, False, False, True]
    assert load_config(InsLocConfig, config_path("fpn_400ep")).train.epochs == 400
    assert load_config(InsLocConfig, config_path("moco_v2_200ep")).method == "moco"
    with torch.device("meta"):
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == 86_485_376  # query + key (spec §3)


def test_epoch_sampler_and_cosine_per_epoch():
    sampler = iter(EpochSampler(10, 4, rank=0, world=1, seed=0))
    first = [next(sampler) for _ in range(16)]
    assert sorted(i % 10 for i in first[:8]) == sorted(set(i % 10 for i in first[:8]))  # no repeat in an epoch
    assert all(i < 10 for i in first[:8]) and all(10 <= i < 20 for i in first[8:16])  # 8 per epoch, then epoch 1
    resumed = iter(EpochSampler(10, 4, rank=0, world=1, seed=0, start=5))
    assert [next(resumed) for _ in range(11)] == first[5:16]
    ranks = [set(next(iter(EpochSampler(10, 4, r, 2, 0, start=k))) for k in range(4)) for r in (0, 1)]
    assert not ranks[0] & ranks[1]
    cfg = load_config(InsLocConfig, config_path("fpn_200ep"))
    assert learning_rate(cfg, 0) == 0.03 and learning_rate(cfg, 100) == pytest.approx(0.015)
    assert learning_rate(cfg, 200) == pytest.approx(0.0)


@pytest.mark.parametrize("method,row", [("insloc", "fpn_200ep"), ("moco", "fpn_200ep"), ("insloc", "c4_200ep")])
def test_resume_equals_an_uninterrupted_run(images, tmp_path, method, row):
    torch.set_num_threads(1)
    cfg = _cfg(images, f"method={method}", row=row)
    full = train_insloc(cfg, tmp_path / "full")
    loss = {"moco": "loss", "fpn_200ep": "loss_p5", "c4_200ep": "loss_c4"}["moco" if method == "moco" else row]
    assert full.step == 4 and np.isfinite(full.scalars[loss])
    train_insloc(cfg, tmp_path / "cut", max_iterations=2)
    train_insloc(cfg, tmp_path / "cut", resume=tmp_path / "cut")
    a, b = (load_checkpoint(resolve_resume(tmp_path / name)) for name in ("full", "cut"))
    assert a["step"] == b["step"] == 4
    for key, value in a["modules"]["model"].items():
        assert torch.equal(value, b["modules"]["model"][key]), key


def test_queue_must_hold_whole_batches(images, tmp_path):
    with pytest.raises(ConfigError, match="multiple of train.batch"):
        train_insloc(_cfg(images, "model.queue_size=6"), tmp_path)
    with pytest.raises(ConfigError, match="data.path is empty"):
        train_insloc(_cfg(images, "data.path="), tmp_path)


def test_a_project_run_exports_to_every_format(images, tmp_path):
    import pickle

    from click.testing import CliRunner

    from insloc.export import main, read_official

    torch.set_num_threads(1)
    run = train_insloc(_cfg(images, "train.epochs=1"), tmp_path / "run")
    for fmt, name in (("torchvision", "tv.pth"), ("detectron2", "d2.pkl"), ("mmdet", "mmdet.pth")):
        result = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "run"), "--to", fmt, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    query = run.model.encoder_q.state_dict()
    assert torch.equal(torch.load(tmp_path / "tv.pth")["roi_heads.box_head.5.weight"], query["head.fcs.0.weight"])
    with open(tmp_path / "d2.pkl", "rb") as f:
        d2 = pickle.load(f)["model"]
    assert np.array_equal(d2["backbone.fpn_output3.norm.running_mean"], query["neck.layer_blocks.1.1.running_mean"])
    official = torch.load(tmp_path / "mmdet.pth")
    assert torch.equal(official["state_dict"]["queues"], run.model.queues)
    again = read_official(tmp_path / "mmdet.pth")
    assert all(torch.equal(again[k], v) for k, v in query.items())
    moco = train_insloc(_cfg(images, "method=moco", "train.epochs=1"), tmp_path / "moco")
    assert moco.step == 2
    trunk = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "moco"), "--to", "torchvision", "--out",
                                      str(tmp_path / "m.pth")])
    assert trunk.exit_code == 0, trunk.output
    exported = torch.load(tmp_path / "m.pth")  # the trunk only, in the detector's names
    assert torch.equal(exported["backbone.body.layer4.2.conv3.weight"],
                       moco.model.encoder_q.state_dict()["layer4.2.conv3.weight"])
    assert not any(k.startswith(("backbone.fpn", "roi_heads")) or ".fc." in k for k in exported)
    refused = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "moco"), "--to", "mmdet", "--out",
                                        str(tmp_path / "m2.pth")])
    assert refused.exit_code != 0 and "MoCo v2 run" in refused.output and not (tmp_path / "m2.pth").exists()


@pytest.mark.parametrize("method", ["insloc", "moco"])
def test_tiny_preset_trains_offline(tmp_path, method):
    torch.set_num_threads(1)
    cfg = load_config(InsLocConfig, config_path("tiny"), [f"method={method}", "data.synthetic_count=64",
                                                          "train.epochs=1", "model.queue_size=64"])
    with torch.device("meta"):
        assert sum(p.numel() for p in build_model(cfg).encoder_q.parameters()) > 0
    result = train_insloc(cfg, tmp_path, max_iterations=2)
    assert result.step == 2 and all(np.isfinite(v) for v in result.scalars.values())


def test_box_robustness_probe_on_a_tiny_run(tmp_path):
    from click.testing import CliRunner

    from insloc.eval import main

    torch.set_num_threads(1)
    sets = ["data.synthetic_count=64", "train.epochs=1", "model.queue_size=64"]
    train_insloc(load_config(InsLocConfig, config_path("tiny"), sets), tmp_path / "insloc", max_iterations=1)
    result = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "insloc"), "--count", "16"])
    assert result.exit_code == 0, result.output
    probe = json.loads(result.output)
    assert set(probe) == {"jittered", "true_boxes", "dead_fc", "cosine"}
    assert all(len(probe[k]) == 4 and all(0 <= x <= 1 for x in probe[k]) for k in ("jittered", "true_boxes"))
    assert len(probe["dead_fc"]) == 2 and len(probe["cosine"]) == 4
    train_insloc(load_config(InsLocConfig, config_path("tiny"), [*sets, "method=moco"]), tmp_path / "moco",
                 max_iterations=1)
    refused = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "moco")])
    assert refused.exit_code != 0 and "needs InsLoc's RoI head" in refused.output
    missing = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and f"--ckpt {tmp_path / 'nope'}: no such file" in missing.output  # its own flag
    other = tmp_path / "cmpl" / "snapshot-000000002.pt"  # another package's run, as common.checkpoint writes it
    other.parent.mkdir()
    torch.save(capture(2, {"primary": torch.nn.Linear(2, 2), "aux": torch.nn.Linear(2, 2)},
                       config={"seed": 0, "primary": {"arch": "r2plus1d"}}), other)
    refused = CliRunner().invoke(main, ["--ckpt", str(other.parent)])
    assert refused.exit_code != 0 and "has no module named model (it has: primary, aux)" in refused.output
    assert "Traceback" not in refused.output and sorted(p.name for p in other.parent.iterdir()) == [other.name]


def test_collapse_signs_count_dead_units_and_the_cosine_of_different_objects():
    from insloc.eval import collapse_signs
    from insloc.model import InsLocFPN

    torch.manual_seed(0)
    encoder = InsLocFPN(fpn_channels=8, roi_size=2, head_convs=1, fc=6, dim=4, block="basic", layers=(1, 1, 1, 1),
                        width=4)
    images = torch.randn(5, 3, 32, 32)
    pairs = [(None, None, image, torch.tensor([4.0, 4.0, 28.0, 24.0])) for image in images]
    with torch.no_grad():
        encoder.head.fcs[1].bias[:4] = -1e4  # four of six fc 2 units can never fire
        encoder.head.fcs[1].bias[4:] = 1e4  # two always fire
    signs = collapse_signs(encoder.train(), pairs, 5)
    assert signs["dead_fc"][1] == pytest.approx(4 / 6) and encoder.training  # its mode is given back
    assert 0 <= signs["dead_fc"][0] < 1
    with torch.no_grad():
        e = encoder.eval()(images, [pairs[0][3].expand(5, 4)] * 4)[3]
    assert signs["cosine"][3] == pytest.approx(float((e @ e.T)[~torch.eye(5, dtype=torch.bool)].mean()), abs=1e-6)
    with torch.no_grad():
        encoder.head.fcs[1].bias[4:] = -1e4  # every fc 2 unit dead: every object embeds as the projection's bias
        encoder.head.projection.bias.fill_(0.5)
    signs = collapse_signs(encoder, pairs, 5)
    assert signs["dead_fc"][1] == 1 and signs["cosine"] == pytest.approx([1.0] * 4, abs=1e-6)


def test_the_probe_jitter_stays_in_its_iou_band():
    from torchvision.ops import box_iou

    from insloc.box_aug import grid_anchors, jitter_boxes

    gt = torch.tensor([[10.0, 12.0, 50.0, 60.0], [0.0, 0.0, 40.0, 30.0]])
    boxes = jitter_boxes(gt, grid_anchors((8, 8), 8, (1.0, 2.0, 4.0, 8.0)), torch.Generator().manual_seed(0),
                         0.5, max_iou=0.6)
    iou = box_iou(boxes, gt).diagonal()
    assert ((iou > 0.5) & (iou <= 0.6)).all()
