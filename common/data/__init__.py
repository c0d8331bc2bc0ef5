"""Image datasets (StyleGAN2-ADA folder/zip format), infinite sharded sampling, and offline synthetic data.

``python -m common.data.tool`` converts image folders and zips into datasets (see :mod:`common.data.tool`).
"""

from common.data.archive import write_image_archive
from common.data.dataset import DatasetError, ImageDataset
from common.data.loader import infinite_loader
from common.data.sampler import InfiniteSampler
from common.data.synthetic import digits, digits_dataset, shapes, shapes_dataset

__all__ = [
    "DatasetError",
    "ImageDataset",
    "InfiniteSampler",
    "digits",
    "digits_dataset",
    "infinite_loader",
    "shapes",
    "shapes_dataset",
    "write_image_archive",
]
