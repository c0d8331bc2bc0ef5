"""Fused StyleGAN2 ops: bias_act, upfirdn2d and its wrappers, conv2d_resample, modulated_conv2d.

Semantics of NVlabs/stylegan2-ada-pytorch ``torch_utils/ops`` and ``training/networks.py`` (papers/stylegan2_base.md
section 3.2). Every op has a pure-PyTorch reference path (CPU, any dtype, gradients of any order needed by R1 and
path-length regularisation); ``bias_act`` and ``upfirdn2d`` also have CUDA kernels (``csrc/``) built on first use.
``COMMON_OPS_IMPL=ref|cuda`` forces a path; ``python -m common.ops.build`` compiles the kernels.
"""

from common.ops.activation import ACTIVATIONS, bias_act
from common.ops.conv import conv2d_resample
from common.ops.modconv import fma, modulated_conv2d
from common.ops.resample import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "fma",
    "modulated_conv2d",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
