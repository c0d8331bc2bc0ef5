"""GAN metrics from data: FID, KID, precision/recall and IS of a generator or an image set against real data.

Defaults are stylegan2-ada-pytorch's registered metrics (metrics.md §4-5): ``fid50k_full`` (50k generated, all
real, biased covariance), ``kid50k_full`` (50k generated, up to 1M real, 100 subsets of 1000), ``pr50k3_full``
(50k generated, 200k real, k=3, VGG16 features) and ``is50k`` (50k generated, 10 splits). ``fake`` is either a
generator module (see ``compute.generator_features``) or a dataset of images (``compute.open_images``); real
statistics are cached (``compute.real_stats``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from common.metrics.base import FeatureExtractor
from common.metrics.compute import dataset_features, generator_features, real_stats
from common.metrics.extractors import InceptionExtractor
from common.metrics.inception_score import inception_score
from common.metrics.kid import kernel_inception_distance
from common.metrics.precision_recall import precision_recall
from common.metrics.stats import FeatureStats, check_protocols, fid_from_stats

Fake = nn.Module | torch.utils.data.Dataset


def _loader_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in ("batch_size", "num_workers")}


def fake_stats(fake: Fake, extractor: FeatureExtractor, num: int, real: torch.utils.data.Dataset | None = None,
               capture_all: bool = False, **kwargs: Any) -> FeatureStats:
    """Statistics of ``num`` generated images (a generator) or of the first ``num`` images of a dataset.

    ``kwargs``: those of ``generator_features`` for a generator; ``batch_size``, ``num_workers``, ``outputs`` for
    a dataset.
    """
    if isinstance(fake, nn.Module):
        kwargs.pop("num_workers", None)  # generated images need no loader
        return generator_features(fake, extractor, num, label_dataset=real, capture_all=capture_all, **kwargs)
    return dataset_features(fake, extractor, max_items=num, capture_all=capture_all, outputs=kwargs.get("outputs"),
                            **_loader_kwargs(kwargs))


def compute_fid(real: torch.utils.data.Dataset, fake: Fake, extractor: FeatureExtractor, num_gen: int = 50000,
                max_real: int | None = None, unbiased: bool = False, cache: bool = True, **kwargs: Any) -> float:
    """FID (or proxy-FD, per ``extractor.metric_label``) of ``fake`` against all (or ``max_real``) real images."""
    reals = real_stats(real, extractor, max_real, cache=cache, **_loader_kwargs(kwargs))
    return fid_from_stats(reals, fake_stats(fake, extractor, num_gen, real, **kwargs), unbiased=unbiased)


def compute_kid(real: torch.utils.data.Dataset, fake: Fake, extractor: FeatureExtractor, num_gen: int = 50000,
                max_real: int | None = 1_000_000, num_subsets: int = 100, max_subset_size: int = 1000,
                seed: int = 0, cache: bool = True, **kwargs: Any) -> float:
    """KID (``kid50k_full``); multiply by 1e3 for the usual table unit."""
    reals = real_stats(real, extractor, max_real, capture_all=True, cache=cache, **_loader_kwargs(kwargs))
    fakes = fake_stats(fake, extractor, num_gen, real, capture_all=True, **kwargs)
    check_protocols(reals, fakes)
    return kernel_inception_distance(reals.features(), fakes.features(), num_subsets, max_subset_size, seed)


def compute_pr(real: torch.utils.data.Dataset, fake: Fake, extractor: FeatureExtractor, num_gen: int = 50000,
               max_real: int | None = 200_000, k: int = 3, cache: bool = True, **kwargs: Any) -> tuple[float, float]:
    """(precision, recall) (``pr50k3_full``); ``extractor`` should be the VGG16 detector for official numbers."""
    reals = real_stats(real, extractor, max_real, capture_all=True, cache=cache, **_loader_kwargs(kwargs))
    fakes = fake_stats(fake, extractor, num_gen, real, capture_all=True, **kwargs)
    check_protocols(reals, fakes)
    return precision_recall(torch.from_numpy(reals.features()), torch.from_numpy(fakes.features()), k=k)


def compute_is(fake: Fake, extractor: InceptionExtractor, num_gen: int = 50000, num_splits: int = 10,
               real: torch.utils.data.Dataset | None = None, **kwargs: Any) -> tuple[float, float]:
    """(mean, std) Inception Score (``is50k``) from the 1008-way probabilities without output bias."""
    probs = fake_stats(fake, extractor, num_gen, real, capture_all=True, outputs=extractor.probabilities, **kwargs)
    return inception_score(probs.features(), num_splits)
