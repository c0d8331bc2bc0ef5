"""StyleGAN2-ADA networks: mapping, 'skip' synthesis, 'resnet'/'orig'/'skip' discriminator.

Faithful to NVlabs/stylegan2-ada-pytorch ``training/networks.py`` (Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data"; StyleGAN2 architecture of Karras et al. 2020, "Analyzing and Improving the
Image Quality of StyleGAN"): same module tree, parameter names, initialisation and equalised-learning-rate gains, so
parameter counts equal the official ones (spec §3.3) and official state dicts load key for key.

Extension points for the paper packages, all inert by default (outputs and ``state_dict`` keys unchanged):

- **weight hook** (:class:`FullyConnectedLayer`, :class:`Conv2dLayer`): ``layer.weight_hook = f`` makes the layer
  use ``f(layer, layer.weight)`` as its effective weight instead of ``weight * weight_gain`` (DynamicD's channel
  masks with the recomputed fan-in gain); every D block layer carries its Freeze-D index in ``layer_idx``;
- **input hook** (:class:`SynthesisLayer`, :class:`ToRGBLayer`): ``layer.set_input_hook(module, name)`` runs
  ``module(x, layer_input)`` on the layer's input before the modulated convolution (EqGAN-SA's SEL); the values come
  from ``G.synthesis(ws, layer_inputs={'b8': ...})``, one per block;
- **styles** (:class:`SynthesisNetwork`): ``style_dims()``, ``compute_styles(ws)`` and ``forward(None, styles=...)``
  expose StyleGAN2's per-layer styles (the affine outputs, GH-Feat's target space);
- **features** (:class:`Discriminator`): ``D(img, c, return_features=('b16', 'b8', 'fc'))`` also returns named block
  outputs and the epilogue's hidden fc output.

Differences, by design:
- fp16 blocks run in fp16 only on CUDA; on CPU every block computes in fp32 (the official code would run fp16
  convolutions on CPU unless ``--fp32`` is given).
- No custom ``conv2d_gradfix``: ``F.conv2d`` supports double backward in every torch this project supports.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from common.ops import bias_act, conv2d_resample, downsample2d, modulated_conv2d, setup_filter, upsample2d

DEFAULT_FILTER = (1, 3, 3, 1)

WeightHook = Callable[[nn.Module, Tensor], Tensor]
"""``hook(layer, raw_weight) -> effective weight``: replaces ``raw_weight * layer.weight_gain`` in the forward."""


def _default_gain(activation: str) -> float:
    """bias_act's default output gain: sqrt(2) for relu, lrelu and swish, 1 otherwise (spec §3.2)."""
    return math.sqrt(2) if activation in ("relu", "lrelu", "swish") else 1.0


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """x / sqrt(mean(x^2) + eps) along ``dim`` (StyleGAN's pixel norm of z and of the label embedding)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _block_dtype(use_fp16: bool, force_fp32: bool, x: Tensor | None, default: torch.dtype) -> torch.dtype:
    """fp16 for fp16 blocks on CUDA; otherwise the block's own parameter dtype (fp32, or fp64 in gradient checks)."""
    on_cuda = x is not None and x.device.type == "cuda"
    return torch.float16 if use_fp16 and not force_fp32 and on_cuda else default


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised lr: y = act(x @ (W * lr_mult / sqrt(in))^T + b * lr_mult).

    W is stored as N(0, 1) / lr_mult so that its effective scale and its effective learning rate are both
    multiplied by ``lr_multiplier`` (0.01 in the mapping network).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight_hook: WeightHook | None = None
        self.layer_idx: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.weight_hook is None:
            w = self.weight.to(x.dtype) * self.weight_gain
        else:  # both the fast addmm path and bias_act below use it
            w = self.weight_hook(self, self.weight).to(x.dtype)
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with equalised lr (gain 1/sqrt(in*k*k)), optional FIR up/down-sampling, bias, activation, clamp.

    ``trainable=False`` stores weight and bias as buffers (Freeze-D), keeping the state-dict keys. ``layer_idx`` is
    the Freeze-D index of a discriminator block layer (None elsewhere); ``weight_hook`` see the module docstring.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: tuple[int, ...] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.layer_idx = layer_idx
        self.weight_hook: WeightHook | None = None
        self.activation = activation
        self.up, self.down = up, down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = _default_gain(activation)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_value) if bias_value is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_value)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = self.weight * self.weight_gain if self.weight_hook is None else self.weight_hook(self, self.weight)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = self.up == 1  # slightly faster, as the official layer
        x = conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=flip_weight,
        )
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, out={self.out_channels}, act={self.activation}, up={self.up}, down={self.down}"


class MappingNetwork(nn.Module):
    """z (and label c) -> w, broadcast to ``num_ws`` copies; tracks ``w_avg`` for truncation.

    z and the label embedding are each 2nd-moment normalised and concatenated; ``num_layers`` dense lrelu layers
    with lr multiplier 0.01 follow. In training mode w_avg <- lerp(mean_batch(w), w_avg, w_avg_beta).
    Truncation: w <- w_avg + psi (w - w_avg) on the first ``truncation_cutoff`` ws (all when None).
    ``num_layers`` may be 0: the official InsGen D maps labels with the normalised embedding alone.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws, self.num_layers = num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        skip_w_avg_update: bool = False,
    ) -> Tensor:
        x = None
        dtype = next(self.parameters()).dtype  # fp32 (fp64 in gradient checks); no fc0 with 0 layers
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(dtype))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(dtype)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs w_avg, which this mapping network does not track")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class _InputHooked(nn.Module):
    """An optional input hook: a child module run on the layer's input before its modulated convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.input_hook_name: str | None = None

    def set_input_hook(self, hook: nn.Module, name: str = "input_hook") -> None:
        """Register ``hook`` as child ``name`` (so its parameters train and save under that key, e.g. EqGAN's
        official ``sel``) and call ``hook(x, layer_input)`` on every forward from now on."""
        if self.input_hook_name is not None:
            raise ValueError(f"this layer already has an input hook ({self.input_hook_name!r})")
        if hasattr(self, name):
            raise ValueError(f"cannot register the input hook as {name!r}: the layer already has that attribute")
        setattr(self, name, hook)
        self.input_hook_name = name

    def _hook_input(self, x: Tensor, layer_input: Any) -> Tensor:
        if self.input_hook_name is None:
            return x
        return getattr(self, self.input_hook_name)(x, layer_input).to(x.dtype)


class SynthesisLayer(_InputHooked):
    """Modulated 3x3 conv (optionally 2x up), per-pixel noise * learned strength, bias, lrelu * sqrt(2), clamp.

    ``style`` replaces ``affine(w)`` (the per-layer style of :meth:`SynthesisNetwork.compute_styles`);
    ``layer_input`` goes to the input hook, if one is set.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: tuple[int, ...] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = _default_gain(activation)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        )
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(
        self,
        x: Tensor,
        w: Tensor | None,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1.0,
        style: Tensor | None = None,
        layer_input: Any = None,
    ) -> Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        styles = self.affine(w) if style is None else style
        x = self._hook_input(x, layer_input)
        noise = None
        if self.use_noise and noise_mode == "random":
            size = self.resolution
            noise = torch.randn([x.shape[0], 1, size, size], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x=x,
            weight=self.weight,
            styles=styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=self.up == 1,
            fused_modconv=fused_modconv,
        )
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp)


class ToRGBLayer(_InputHooked):
    """1x1 modulated conv to image channels, NOT demodulated; styles scaled by 1/sqrt(in).

    ``style`` replaces ``affine(w)`` (before the 1/sqrt(in) scaling); ``layer_input`` goes to the input hook.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        )
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(
        self,
        x: Tensor,
        w: Tensor | None,
        fused_modconv: bool = True,
        style: Tensor | None = None,
        layer_input: Any = None,
    ) -> Tensor:
        styles = (self.affine(w) if style is None else style) * self.weight_gain
        x = self._hook_input(x, layer_input)
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' generator: [const | conv0 (up 2x)], conv1, torgb; img = up(img) + torgb(x)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: tuple[int, ...] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown synthesis architecture {architecture!r}")
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture = img_channels, is_last, architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def modulated_layers(self) -> list[nn.Module]:
        """conv0 (not in b4), conv1, torgb (last block or 'skip'): the layers with a style, in forward order."""
        return [getattr(self, name) for name in ("conv0", "conv1", "torgb") if hasattr(self, name)]

    def compute_styles(self, ws: Tensor) -> list[Tensor]:
        """The style of every modulated layer, affine(w), for this block's ws [N, num_conv + num_torgb, w_dim]."""
        return [layer.affine(w) for layer, w in zip(self.modulated_layers(), ws.unbind(dim=1))]

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Tensor | None,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        styles: Sequence[Tensor] | None = None,
        layer_input: Any = None,
        **layer_kwargs,
    ) -> tuple[Tensor, Tensor | None]:
        """``styles`` (one per :meth:`modulated_layers`) replace ``ws``; ``layer_input`` reaches the input hooks."""
        if styles is None:
            w_iter, s_iter, reference = iter(ws.unbind(dim=1)), itertools.repeat(None), ws
        else:
            w_iter, s_iter, reference = itertools.repeat(None), iter(styles), styles[0]
        hooked = dict(layer_input=layer_input)
        dtype = _block_dtype(self.use_fp16, force_fp32, reference, self.resample_filter.dtype)
        memory_format = torch.channels_last if self.channels_last and not force_fp32 else torch.contiguous_format
        batch = reference.shape[0]
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype != torch.float16 or batch == 1)
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format).unsqueeze(0).repeat([batch, 1, 1, 1])
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, style=next(s_iter), **hooked, **layer_kwargs)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, style=next(s_iter), **hooked, **layer_kwargs)
            x = self.conv1(
                x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), style=next(s_iter), **hooked,
                **layer_kwargs,
            )
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, style=next(s_iter), **hooked, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, style=next(s_iter), **hooked, **layer_kwargs)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv, style=next(s_iter), **hooked)
            y = y.to(dtype=torch.float32 if dtype == torch.float16 else dtype, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y
        return x, img


def _log2_resolution(img_resolution: int) -> int:
    log2 = int(np.log2(img_resolution))
    if img_resolution < 4 or img_resolution != 2**log2:
        raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    return log2


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, C, res, res]; blocks b4 ... b{res}, channels min(base // r, max)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs,
    ) -> None:
        super().__init__()
        log2 = _log2_resolution(img_resolution)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=res == img_resolution,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def _blocks_and_ws(self, ws: Tensor) -> list[tuple[nn.Module, Tensor]]:
        """Each block with its ws: conv ws in order; a torgb shares the w of the next block's first conv."""
        out, w_idx = [], 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            out.append((block, ws.narrow(1, w_idx, block.num_conv + block.num_torgb)))
            w_idx += block.num_conv
        return out

    def style_dims(self) -> dict[str, int]:
        """``{'b4.conv1': C, 'b4.torgb': C, 'b8.conv0': ...}``: the channels of every per-layer style, in forward
        order (StyleGAN2's S space; its dimension is the sum)."""
        dims = {}
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            for name in ("conv0", "conv1", "torgb"):
                if hasattr(block, name):
                    dims[f"b{res}.{name}"] = getattr(block, name).affine.out_features
        return dims

    def compute_styles(self, ws: Tensor) -> list[Tensor]:
        """The per-layer styles affine(w) [N, C_l] that ``forward(ws)`` uses, in :meth:`style_dims` order."""
        return [style for block, block_ws in self._blocks_and_ws(ws) for style in block.compute_styles(block_ws)]

    def forward(
        self,
        ws: Tensor | None,
        styles: Sequence[Tensor] | None = None,
        layer_inputs: dict[str, Any] | None = None,
        **block_kwargs,
    ) -> Tensor:
        """Images from ws [N, num_ws, w_dim], or from per-layer ``styles`` (``ws`` None; :meth:`style_dims` order).

        ``layer_inputs[f'b{res}']`` is passed to the input hooks of the layers of block ``b{res}`` (None elsewhere).
        """
        if (ws is None) == (styles is None):
            raise ValueError("give the synthesis network either ws or styles")
        if styles is None:
            per_block = [(block, block_ws, None) for block, block_ws in self._blocks_and_ws(ws)]
        else:
            if len(styles) != len(self.style_dims()):
                raise ValueError(f"expected {len(self.style_dims())} styles (style_dims()), got {len(styles)}")
            per_block, s_idx = [], 0
            for res in self.block_resolutions:
                block = getattr(self, f"b{res}")
                count = len(block.modulated_layers())
                per_block.append((block, None, styles[s_idx : s_idx + count]))
                s_idx += count
        x = img = None
        for block, block_ws, block_styles in per_block:
            layer_input = layer_inputs.get(f"b{block.resolution}") if layer_inputs else None
            x, img = block(x, img, block_ws, styles=block_styles, layer_input=layer_input, **block_kwargs)
        return img


class Generator(nn.Module):
    """G(z, c) = synthesis(mapping(z, c)). Registers synthesis before mapping, as the official state dicts.

    ``synthesis_class`` is a :class:`SynthesisNetwork` subclass a paper builds G with (EqGAN-SA's spatially aware
    synthesis, which draws its own heatmaps); it receives ``synthesis_kwargs``."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
        synthesis_class: type[SynthesisNetwork] | None = None,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = (synthesis_class or SynthesisNetwork)(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **(synthesis_kwargs or {})
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {})
        )

    def forward(
        self,
        z: Tensor,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs,
    ) -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)


class DiscriminatorBlock(nn.Module):
    """One resolution of D: [fromrgb], conv0 3x3, conv1 3x3 down 2x; 'resnet' adds a 1x1 down skip, both * sqrt(.5).

    Layers whose running index (fromrgb, conv0, conv1, skip, counted from the highest resolution; stored as each
    layer's ``layer_idx``) is below ``freeze_layers`` are frozen (Freeze-D).
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: tuple[int, ...] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ) -> None:
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown discriminator architecture {architecture!r}")
        self.in_channels, self.resolution = in_channels, resolution
        self.img_channels, self.architecture = img_channels, architecture
        self.first_layer_idx = first_layer_idx
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_layers = 0

        def index_next() -> dict[str, object]:
            layer_idx = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return dict(layer_idx=layer_idx, trainable=layer_idx >= freeze_layers)

        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, **index_next(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, **index_next(), **common)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            down=2,
            resample_filter=resample_filter,
            **index_next(),
            **common,
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                down=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
                **index_next(),
            )

    def forward(self, x: Tensor | None, img: Tensor | None, force_fp32: bool = False) -> tuple[Tensor, Tensor | None]:
        reference = x if x is not None else img
        dtype = _block_dtype(self.use_fp16, force_fp32, reference, self.resample_filter.dtype)
        memory_format = torch.channels_last if self.channels_last and not force_fp32 else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class MinibatchStdLayer(nn.Module):
    """Appends the per-group std of features (averaged over channels and pixels) as ``num_channels`` maps.

    Groups are strided: ``x.reshape(G, -1, ...)`` puts samples i, i + N/G, i + 2N/G, ... together, as the official
    layer; N must be divisible by the group size min(G, N).
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        group = min(self.group_size, n) if self.group_size is not None else n
        if n % group:
            raise ValueError(f"minibatch-std: batch {n} is not divisible by the group size {group}")
        f = self.num_channels
        y = x.reshape(group, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1).repeat(group, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: [fromrgb], minibatch-std, conv 3x3, fc lrelu, out (1 logit or cmap_dim projection)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(
        self, x: Tensor, img: Tensor | None, cmap: Tensor | None, force_fp32: bool = False, return_hidden: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Logits; with ``return_hidden`` also the hidden fc output [N, C] that ``out`` projects."""
        dtype = self.out.weight.dtype
        x = x.to(dtype=dtype, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        hidden = self.fc(x.flatten(1))
        x = self.out(hidden)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return (x, hidden) if return_hidden else x


class Discriminator(nn.Module):
    """D(img, c) -> logits [N, 1]. Blocks b{res} ... b8 then the epilogue b4; conditional D projects onto the
    output of its own label mapping network (cmap, default 8 layers even where G's mapping has 2)."""

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict | None = None,
        mapping_kwargs: dict | None = None,
        epilogue_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        log2 = _log2_resolution(img_resolution)
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in [*self.block_resolutions, 4]}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=res >= fp16_resolution,
                **(block_kwargs or {}),
                **common,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {})
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}), **common
        )

    def feature_names(self) -> list[str]:
        """What ``return_features`` can name: each block's output (``b{res}``, named by its input resolution:
        ``b8`` is the [N, C, 4, 4] input of the epilogue) and ``fc``, the epilogue's hidden fc output [N, C]."""
        return [f"b{res}" for res in self.block_resolutions] + ["fc"]

    def forward(
        self, img: Tensor, c: Tensor | None, return_features: Sequence[str] = (), **block_kwargs
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Logits [N, 1]; with ``return_features`` (names from :meth:`feature_names`) also ``{name: tensor}``.

        InsGen's heads read ``b8`` (genforce/insgen ``return_feats``), EqGAN-SA's Grad-CAM ``b32``/``b16``/``b8``.
        """
        unknown = sorted(set(return_features) - set(self.feature_names()))
        if unknown:
            valid = ", ".join(self.feature_names())
            raise ValueError(f"unknown D feature(s) {', '.join(unknown)}; choose from {valid}")
        features = {}
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
            if f"b{res}" in return_features:
                features[f"b{res}"] = x
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        if not return_features:
            return self.b4(x, img, cmap)
        logits, features["fc"] = self.b4(x, img, cmap, return_hidden=True)
        return logits, {name: features[name] for name in return_features}
