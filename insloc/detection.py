"""Transfer of InsLoc weights to detection (spec insloc.md §5; official transfer/detection: detectron2 Mask R-CNN
R50-FPN, ``FREEZE_AT: 0``, SyncBN, the ``FastRCNNConvFCHeadExtraNorm`` box head), with torchvision's detectors:

- :func:`build_detector`: ``maskrcnn_resnet50_fpn_v2`` / ``fasterrcnn_resnet50_fpn_v2`` from scratch, every layer
  trainable, BatchNorm in the backbone, FPN and the 4conv-1fc box head, plus the official extra BatchNorm after the
  fc's ReLU (ExtraNorm); anchors 32-512 on P2-P6 with ratios 0.5 / 1 / 2, RoIs pooled 7x7 from P2-P5 as
  detectron2's Base-RCNN-FPN; :func:`load_pretrained` loads :func:`insloc.export.torchvision_state_dict` weights
  (backbone, FPN, head convs, fc1; as ``convert_pretrained.py`` transfers them);
- :class:`CocoDetection`: COCO-format images + ``instances_*.json`` (pycocotools), crowd boxes left out, categories
  mapped to 1..K (0 is background in torchvision), masks for Mask R-CNN, horizontal flips in training;
- :func:`coco_detections`: the detector's outputs as COCO results for :func:`common.metrics.detection.coco_box_ap`
  (and ``coco_mask_ap`` for Mask R-CNN's masks).

Where torchvision differs from detectron2 (README): no precise-BN pass before testing, the RPN head has two convs in
v2 (detectron2: one), RoI pooling uses torchvision's level mapper (canonical 224 / level 4, the same rule).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from common.data.dataset import DatasetError
from common.metrics.detection import mask_to_rle
from insloc.model import ResNet

FC_DIM = 1024


@dataclass(frozen=True)
class DetectorSize:
    """The detector's settings that follow the pretrained encoder (:class:`insloc.model.InsLocFPN`) and the image
    size: defaults are ``fasterrcnn_resnet50_fpn_v2``'s (ResNet-50, FPN 256, 4conv-1fc head of 1,024, RoIs 7x7,
    anchors 32-512, 512 sampled RoIs per image, 2,000 proposals per image in training, 1,000 in testing); the tiny
    preset is a smaller setting of the same parts (few objects per small image: fewer RoIs and proposals)."""

    block: str = "bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64
    stem_pool: bool = True
    fpn_channels: int = 256
    head_convs: int = 4
    fc: int = FC_DIM
    roi_size: int = 7
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    rois_per_image: int = 512
    proposals: int = 2000


def build_detector(num_classes: int, masks: bool = True, min_size: int | tuple[int, ...] = (640, 672, 704, 736,
                   768, 800), max_size: int = 1333, size: DetectorSize = DetectorSize()) -> nn.Module:
    """Mask (or Faster) R-CNN with a ResNet-FPN for ``num_classes`` object classes, every layer trainable, the
    ExtraNorm box head; multi-scale training sizes as detectron2's ``MIN_SIZE_TRAIN`` (test: the largest).

    Assembled as torchvision's ``maskrcnn_resnet50_fpn_v2`` / ``fasterrcnn_resnet50_fpn_v2`` are (same module names
    and shapes at the default ``size``: test), from the :class:`insloc.model.ResNet` trunk, so that smaller
    settings of InsLoc's encoder transfer too. No torchvision weights: BatchNorm stays a real BatchNorm."""
    trunk = ResNet(size.block, size.layers, size.width, size.stem_pool)
    backbone = BackboneWithFPN(trunk, {f"layer{i}": str(i - 1) for i in range(1, 5)}, trunk.out_channels,
                               size.fpn_channels, extra_blocks=LastLevelMaxPool(), norm_layer=nn.BatchNorm2d)
    c, r = size.fpn_channels, size.roi_size
    anchors = AnchorGenerator(tuple((s,) for s in size.anchor_sizes), ((0.5, 1.0, 2.0),) * len(size.anchor_sizes))
    box_head = FastRCNNConvFCHead((c, r, r), [c] * size.head_convs, [size.fc], norm_layer=nn.BatchNorm2d)
    box_head.append(nn.BatchNorm1d(size.fc))  # official FastRCNNConvFCHeadExtraNorm
    parts: dict[str, Any] = dict(
        box_predictor=FastRCNNPredictor(size.fc, num_classes + 1), min_size=min_size, max_size=max_size,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(c, anchors.num_anchors_per_location()[0], conv_depth=2),
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], r, sampling_ratio=2), box_head=box_head,
        box_batch_size_per_image=size.rois_per_image, rpn_pre_nms_top_n_train=size.proposals,
        rpn_post_nms_top_n_train=size.proposals, rpn_pre_nms_top_n_test=size.proposals // 2,
        rpn_post_nms_top_n_test=size.proposals // 2)
    if masks:
        return MaskRCNN(backbone, mask_head=MaskRCNNHeads(c, [256] * 4, 1, norm_layer=nn.BatchNorm2d),
                        mask_predictor=MaskRCNNPredictor(256, 256, num_classes + 1), **parts)
    return FasterRCNN(backbone, **parts)


def load_pretrained(model: nn.Module, state: dict[str, Tensor]) -> list[str]:
    """Load exported InsLoc / MoCo weights (``torchvision_state_dict`` names); returns the detector's parameters
    they leave at initialisation. A name the detector lacks, or a shape that differs, is an error."""
    own = model.state_dict()
    foreign = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(state) & set(own) if own[k].shape != state[k].shape)
    if foreign or wrong:
        raise ValueError(f"the weights do not fit the detector: {(foreign + wrong)[0]} ({len(foreign)} unknown, "
                         f"{len(wrong)} mis-shaped names)")
    missing, _ = model.load_state_dict(state, strict=False)
    return missing


class CocoDetection(torch.utils.data.Dataset):
    """(image float [0, 1] (3, H, W), target) of a COCO-format split; target: boxes xyxy, labels 1..K, image_id,
    masks (with ``masks``)."""

    def __init__(self, images: str | Path, annotations: str | Path, train: bool, masks: bool = True) -> None:
        from pycocotools.coco import COCO

        path = Path(annotations)
        if not path.is_file():
            raise DatasetError(f"no COCO annotation file at {path}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco = COCO(str(path))
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"{path} is not a COCO instances file ({err})") from None
        self.images, self.train, self.masks = Path(images), train, masks
        self.ids = sorted(self.coco.imgs)
        if train:  # detectron2 drops training images without annotations
            self.ids = [i for i in self.ids if any(not a.get("iscrowd", 0) for a in self.coco.imgToAnns[i])]
        self.category_ids = sorted(self.coco.cats)
        self.label_of = {c: i + 1 for i, c in enumerate(self.category_ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        try:
            with Image.open(self.images / info["file_name"]) as picture:
                image = np.asarray(picture.convert("RGB"))
        except OSError as err:
            raise DatasetError(f"cannot read {self.images / info['file_name']}: {err}") from None
        anns = [a for a in self.coco.imgToAnns[image_id] if not a.get("iscrowd", 0) and a["bbox"][2] > 0
                and a["bbox"][3] > 0]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        target: dict[str, Any] = {"boxes": boxes, "image_id": image_id,
                                  "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns],
                                                         dtype=torch.int64)}
        if self.masks:
            target["masks"] = torch.from_numpy(np.stack([self.coco.annToMask(a) for a in anns]) if anns
                                               else np.zeros((0, *image.shape[:2]), dtype=np.uint8))
        tensor = torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255
        if self.train and torch.rand(()) < 0.5:
            width = tensor.shape[-1]
            tensor = tensor.flip(-1)
            target["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
            if self.masks:
                target["masks"] = target["masks"].flip(-1)
        return tensor, target


def coco_detections(outputs: list[dict[str, Tensor]], image_ids: list[int], category_ids: list[int]
                    ) -> list[dict[str, Any]]:
    """torchvision detector outputs -> COCO results (bbox as x, y, w, h; the original category ids; with Mask R-CNN's
    ``masks`` (N, 1, H, W) probabilities, also ``segmentation``: the mask at 0.5 as RLE, detectron2's threshold)."""
    results = []
    for output, image_id in zip(outputs, image_ids):
        masks = output["masks"][:, 0].numpy() > 0.5 if "masks" in output else None
        for i, (box, label, score) in enumerate(zip(output["boxes"].tolist(), output["labels"].tolist(),
                                                    output["scores"].tolist())):
            x1, y1, x2, y2 = box
            result = {"image_id": int(image_id), "category_id": category_ids[label - 1],
                      "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
            if masks is not None:
                result["segmentation"] = mask_to_rle(masks[i])
            results.append(result)
    return results


def collate(batch: list[tuple[Tensor, dict[str, Any]]]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    return [image for image, _ in batch], [target for _, target in batch]
