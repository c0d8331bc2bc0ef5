"""Shared StyleGAN2-ADA base: networks, ADA augmentation, loss, training loop, official-checkpoint import.

Used by insgen, dynamicd, eqgan, oneshot_gan, ghfeat and volumegan's renderer. See README.md in this folder.
"""

from common.stylegan2.ada import AdaptiveP
from common.stylegan2.augment import AUGPIPE_PRESETS, AugmentParams, AugmentPipe, augment_pipe
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import StyleGAN2Config, preset_path, resolve
from common.stylegan2.legacy import load_official_snapshot
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.networks import Discriminator, Generator, MappingNetwork, SynthesisNetwork
from common.stylegan2.training import LoopState, Method, train

__all__ = [
    "AUGPIPE_PRESETS",
    "AdaptiveP",
    "AugmentParams",
    "AugmentPipe",
    "Discriminator",
    "Generator",
    "LoopState",
    "MappingNetwork",
    "Method",
    "StyleGAN2Config",
    "StyleGAN2Loss",
    "SynthesisNetwork",
    "augment_pipe",
    "build_discriminator",
    "build_generator",
    "load_official_snapshot",
    "preset_path",
    "resolve",
    "train",
]
