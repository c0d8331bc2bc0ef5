"""Transfer: torchvision Mask R-CNN with the ExtraNorm head takes the exported InsLoc weights, trains on a COCO-format
split and is scored by pycocotools; detectron2's warm-up / step schedule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from insloc.detection import CocoDetection, build_detector, coco_detections, load_pretrained
from insloc.export import torchvision_state_dict
from insloc.model import InsLocFPN
from insloc.transfer import evaluate, fine_tune, learning_rate


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """Three 64 px images with one or two rectangles each, in COCO's instances format (polygons, crowd flag)."""
    root = tmp_path_factory.mktemp("coco")
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(3):
        canvas = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
        for j in range(1 + i % 2):
            x, y, w, h = (int(v) for v in rng.integers(4, 30, 4))
            canvas[y : y + h, x : x + w] = (200, 50 + 100 * j, 50)
            annotations.append({"id": len(annotations) + 1, "image_id": 10 + i, "category_id": 3 + 4 * j,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
        Image.fromarray(canvas).save(root / f"{i:012d}.jpg")
        images.append({"id": 10 + i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 64})
    annotations.append({**annotations[0], "id": 99, "iscrowd": 1})
    categories = [{"id": 3, "name": "red"}, {"id": 7, "name": "orange"}]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                     "categories": categories}))
    return root


def test_schedule_is_detectron2s():
    assert learning_rate(0.02, 0, (60000, 80000)) == pytest.approx(0.02 * 0.001)
    assert learning_rate(0.02, 500, (60000, 80000)) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert learning_rate(0.02, 1000, (60000, 80000)) == 0.02
    assert learning_rate(0.02, 60000, (60000, 80000)) == pytest.approx(0.002)
    assert learning_rate(0.02, 85000, (60000, 80000)) == pytest.approx(0.0002)


def test_dataset_maps_categories_and_skips_crowds(coco):
    data = CocoDetection(coco, coco / "instances.json", train=False)
    assert data.category_ids == [3, 7] and len(data) == 3
    image, target = data[1]
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
    assert target["labels"].tolist() == [1, 2] and target["masks"].shape == (2, 64, 64)
    assert len(data[0][1]["boxes"]) == 1  # the crowd copy is left out
    out = [{"boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0]]), "labels": torch.tensor([2]),
            "scores": torch.tensor([0.9])}]
    assert coco_detections(out, [11], data.category_ids) == [
        {"image_id": 11, "category_id": 7, "bbox": [1.0, 2.0, 10.0, 20.0], "score": pytest.approx(0.9)}]


def test_insloc_weights_transfer_train_and_score(coco):
    torch.manual_seed(0)
    encoder = InsLocFPN()
    model = build_detector(2, masks=True, min_size=64, max_size=64)
    missing = load_pretrained(model, torchvision_state_dict(encoder.state_dict()))
    assert all(k.startswith(("rpn.", "roi_heads.box_predictor.", "roi_heads.mask_", "roi_heads.box_head.7."))
               for k in missing), missing
    assert torch.equal(model.backbone.body.layer3[2].conv2.weight, encoder.backbone.layer3[2].conv2.weight)
    assert torch.equal(model.roi_heads.box_head[3][0].weight, encoder.head.convs[9].weight)
    assert torch.equal(model.roi_heads.box_head[5].weight, encoder.head.fcs[0].weight)
    with pytest.raises(ValueError, match="do not fit"):
        load_pretrained(model, {"backbone.body.conv1.weight": torch.zeros(1)})
    data = CocoDetection(coco, coco / "instances.json", train=True)
    losses = fine_tune(model, data, torch.device("cpu"), iterations=2, steps=(1,), batch=2, lr=0.01, workers=0,
                       warmup=1)
    assert len(losses) == 2 and all(np.isfinite(losses))
    metrics = evaluate(model, CocoDetection(coco, coco / "instances.json", train=False, masks=False),
                       torch.device("cpu"))
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    assert set(metrics) == {*names, *(f"mask_{k}" for k in names)}  # Mask R-CNN: mask AP against the polygons


def test_mask_results_are_the_masks_at_one_half():
    from pycocotools import mask as mask_utils

    probabilities = torch.zeros(1, 1, 8, 8)
    probabilities[0, 0, 2:5, 1:7] = 0.6
    probabilities[0, 0, 5, 1:7] = 0.5  # not above 0.5
    out = [{"boxes": torch.tensor([[1.0, 2.0, 7.0, 6.0]]), "labels": torch.tensor([1]),
            "scores": torch.tensor([0.9]), "masks": probabilities}]
    (result,) = coco_detections(out, [4], [3])
    decoded = mask_utils.decode({**result["segmentation"], "counts": result["segmentation"]["counts"].encode()})
    assert decoded.sum() == 18 and decoded[2:5, 1:7].all() and result["bbox"] == [1.0, 2.0, 6.0, 4.0]


def test_no_weight_decay_on_batchnorm_as_detectron2():
    from insloc.transfer import parameter_groups

    model = build_detector(2, masks=False, min_size=64, max_size=64)
    decayed, norms = parameter_groups(model)
    assert decayed["weight_decay"] == 1e-4 and norms["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(norms["params"]) == len(list(model.parameters()))
    bn = model.roi_heads.box_head[7]
    assert any(p is bn.weight for p in norms["params"]) and not any(p is bn.weight for p in decayed["params"])
    assert any(p is model.roi_heads.box_head[5].weight for p in decayed["params"])


@pytest.mark.parametrize("masks", [False, True])
def test_detector_is_torchvisions_r50_fpn_v2_at_the_defaults(masks):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2, maskrcnn_resnet50_fpn_v2

    torch.manual_seed(0)
    reference = (maskrcnn_resnet50_fpn_v2 if masks else fasterrcnn_resnet50_fpn_v2)(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64)
    reference.roi_heads.box_head.append(torch.nn.BatchNorm1d(1024))
    ours = build_detector(2, masks=masks, min_size=64, max_size=64)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in
                                                                  reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict())
    images = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        expected, got = reference.eval()(images)[0], ours.eval()(images)[0]
    assert len(got["boxes"]) > 0 and all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_tiny_encoder_transfers_through_the_export_path(tmp_path):
    """tiny sizes: snapshot -> read_encoder -> torchvision names -> a detector of the same sizes (2 head convs)."""
    from common.config import load_config
    from insloc.config import InsLocConfig, config_path
    from insloc.export import read_encoder
    from insloc.reproduce import detector_size
    from insloc.training import train_insloc

    torch.set_num_threads(1)
    cfg = load_config(InsLocConfig, config_path("tiny"), ["data.synthetic_count=64", "model.queue_size=64",
                                                          "train.epochs=1"])
    run = train_insloc(cfg, tmp_path / "run", max_iterations=1)
    encoder, _ = read_encoder(tmp_path / "run")
    model = build_detector(6, masks=False, min_size=96, max_size=96, size=detector_size(cfg))
    missing = load_pretrained(model, torchvision_state_dict(encoder))
    assert all(k.startswith(("rpn.", "roi_heads.box_predictor.", "roi_heads.box_head.5.")) for k in missing), missing
    query = run.model.encoder_q
    assert torch.equal(model.roi_heads.box_head[1][0].weight, query.head.convs[3].weight)
    assert torch.equal(model.roi_heads.box_head[3].weight, query.head.fcs[0].weight)
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 64
    assert isinstance(model.backbone.body.maxpool, torch.nn.Identity)  # the tiny stem: strides 2-16


def test_a_resumed_fine_tune_equals_an_uninterrupted_one(coco, tmp_path):
    from insloc.detection import DetectorSize

    torch.set_num_threads(1)
    size = DetectorSize("basic", (1, 1, 1, 1), 8, False, 16, 1, 32, 4, (8, 16, 32, 64, 128), 16, 50)
    data = CocoDetection(coco, coco / "instances.json", train=True, masks=False)

    def run(run_dir, resume=False):
        torch.manual_seed(0)
        model = build_detector(2, masks=False, min_size=64, max_size=64, size=size)
        losses = fine_tune(model, data, torch.device("cpu"), iterations=4, steps=(3,), batch=2, lr=0.01, workers=0,
                           warmup=1, seed=5, run_dir=run_dir, snapshot_every=2, resume=resume)
        return model, losses

    whole, losses = run(tmp_path / "a")
    run(tmp_path / "b")
    (tmp_path / "b" / "snapshot-000000004.pt").unlink()  # a crash after the snapshot at iteration 2
    resumed, tail = run(tmp_path / "b", resume=True)
    assert len(tail) == 2 and tail == losses[2:]
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_transfer_cli_refuses_to_overwrite_snapshots_without_resume(coco, tmp_path):
    from click.testing import CliRunner

    from insloc.transfer import main

    (tmp_path / "snapshot-000000002.pt").write_bytes(b"")
    args = ["--images", str(coco), "--train", str(coco / "instances.json"), "--val-images", str(coco), "--val",
            str(coco / "instances.json"), "--out", str(tmp_path)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "add --resume" in refused.output
    empty = CliRunner().invoke(main, args[:-1] + [str(tmp_path / "new"), "--resume"])
    assert empty.exit_code != 0 and "holds no snapshot" in empty.output and not (tmp_path / "new").exists()


def test_transfer_under_torchrun_trains_on_both_ranks_and_scores_once(coco, tmp_path):
    """torchrun --nproc_per_node=2 (gloo, CPU): the process group is made, one snapshot, one metrics line."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
              f"--master_port={port}", "-m", "insloc.transfer", "--images", str(coco), "--train",
              str(coco / "instances.json"), "--val-images", str(coco), "--val", str(coco / "instances.json"),
              "--out", str(tmp_path / "out"), "--boxes-only", "--iterations", "2", "--batch", "2", "--workers", "0",
              "--device", "cpu"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "GENFORCE_NO_PROGRESS": "1"}
    result = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('"AP"') == 1 and (tmp_path / "out" / "metrics.json").is_file()
    assert [p.name for p in (tmp_path / "out").glob("snapshot-*.pt")] == ["snapshot-000000002.pt"]
    odd = subprocess.run(launch[:-6] + ["--batch", "3", "--workers", "0", "--device", "cpu"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert odd.returncode != 0 and "not divisible by the 2 processes" in odd.stderr + odd.stdout


def test_a_training_snapshot_as_weights_is_one_line_naming_the_export(coco, tmp_path):
    from click.testing import CliRunner

    from common import checkpoint
    from insloc.transfer import main

    snapshot = tmp_path / "snapshot-000000001.pt"
    torch.save(checkpoint.capture(1, {"model": torch.nn.Linear(2, 2)}), snapshot)
    result = CliRunner().invoke(main, ["--weights", str(snapshot), "--images", str(coco), "--train",
                                       str(coco / "instances.json"), "--val-images", str(coco), "--val",
                                       str(coco / "instances.json"), "--out", str(tmp_path / "out"), "--boxes-only"])
    assert result.exit_code != 0 and "python -m insloc.export" in result.output and not (tmp_path / "out").exists()
