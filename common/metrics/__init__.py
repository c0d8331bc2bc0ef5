"""Metrics with the official protocols: FID/KID/precision-recall/IS (+ offline proxy-FD), mIoU, top-k, COCO AP.

The protocols, side by side with the official implementations, are in ``papers/metrics.md``; each module's
docstring cites the part it follows. Entry point: ``python -m common.metrics {fid,kid,pr,is} --help``.
"""

from common.metrics.base import FeatureExtractor
from common.metrics.classification import average_views, clip_topk_accuracy, topk_accuracy, video_topk_accuracy
from common.metrics.compute import dataset_features, generator_features, open_images, real_stats, to_uint8
from common.metrics.detection import coco_box_ap, coco_mask_ap, mask_to_rle
from common.metrics.extractors import InceptionExtractor, TorchScriptExtractor, build_extractor, inception_extractor
from common.metrics.frechet import fid_from_features, frechet_distance, mean_cov
from common.metrics.gan import compute_fid, compute_is, compute_kid, compute_pr
from common.metrics.inception import FIDInceptionV3
from common.metrics.inception_score import inception_score
from common.metrics.kid import kernel_inception_distance
from common.metrics.precision_recall import precision_recall
from common.metrics.proxy import ProxyExtractor, load_proxy
from common.metrics.resize import prepare_inception_input, tf1_resize
from common.metrics.segmentation import (
    CITYSCAPES_CLASSES,
    SYNTHIA_13_TRAINIDS,
    SYNTHIA_16_TRAINIDS,
    ConfusionMatrix,
    cityscapes_trainids,
    segmentation_scores,
)
from common.metrics.stats import FeatureStats, ProtocolMismatchError, fid_from_stats
from common.metrics.weights import WeightsNotFoundError

__all__ = [
    "CITYSCAPES_CLASSES",
    "SYNTHIA_13_TRAINIDS",
    "SYNTHIA_16_TRAINIDS",
    "ConfusionMatrix",
    "FIDInceptionV3",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionExtractor",
    "ProtocolMismatchError",
    "ProxyExtractor",
    "TorchScriptExtractor",
    "WeightsNotFoundError",
    "average_views",
    "build_extractor",
    "cityscapes_trainids",
    "clip_topk_accuracy",
    "coco_box_ap",
    "coco_mask_ap",
    "compute_fid",
    "compute_is",
    "compute_kid",
    "compute_pr",
    "dataset_features",
    "fid_from_features",
    "fid_from_stats",
    "frechet_distance",
    "generator_features",
    "inception_extractor",
    "inception_score",
    "kernel_inception_distance",
    "load_proxy",
    "mask_to_rle",
    "mean_cov",
    "open_images",
    "precision_recall",
    "prepare_inception_input",
    "real_stats",
    "segmentation_scores",
    "tf1_resize",
    "to_uint8",
    "topk_accuracy",
    "video_topk_accuracy",
]
