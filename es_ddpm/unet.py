"""The ADM UNet and its noisy-image classifier (Dhariwal & Nichol 2021), the denoisers ES-DDPM reuses (spec §3).

Module and parameter names follow openai/guided-diffusion ``guided_diffusion/unet.py`` (commit 18ff408:
``time_embed.0``, ``input_blocks.N.M``, ``in_layers``/``emb_layers``/``out_layers``/``skip_connection``,
``qkv``/``proj_out``, ``middle_block``, ``output_blocks``, ``out.2``), so the official checkpoints
``64x64_diffusion.pt``, ``lsun_bedroom.pt``, ``lsun_cat.pt`` and ``64x64_classifier.pt`` load with
``weights_only=True`` into :class:`UNetModel` / :class:`EncoderUNetModel`. The code is written from the ADM paper
and that naming, not copied.

Building blocks: ResBlock with scale-shift GroupNorm (AdaGN, ADM Sec. 3: h = GN(h)·(1 + s) + b), optional resampling
inside the block (BigGAN-style, ``resblock_updown``), multi-head self-attention at the listed resolutions, sinusoidal
timestep embedding + 2-layer MLP (4× width), optional class embedding added to it. ``norm_groups`` (32 in every
official model) is exposed so the CPU tiny preset can use 16-channel features; it changes no parameter name.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# guided-diffusion script_util.create_model: channel_mult derived from image_size when not given
_AUTO_CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


def parse_channel_mult(image_size: int, channel_mult: str | Sequence[float]) -> tuple[float, ...]:
    """'1,2,2,2' -> (1, 2, 2, 2); '' -> the official auto value, which exists only for 64/128/256/512 px (spec §9.2)."""
    if isinstance(channel_mult, str):
        if channel_mult.strip():
            return tuple(float(m) if "." in m else int(m) for m in channel_mult.split(","))
        if image_size not in _AUTO_CHANNEL_MULT:
            raise ValueError(f"no default channel_mult for image_size {image_size} (only 64, 128, 256, 512); "
                             "give channel_mult explicitly, e.g. '1,2,2,2' for 32 px")
        return _AUTO_CHANNEL_MULT[image_size]
    return tuple(channel_mult)


def attention_downsample_rates(image_size: int, attention_resolutions: str) -> tuple[int, ...]:
    """'32,16,8' at 64 px -> (2, 4, 8): attention where the feature map is image_size / ds."""
    return tuple(image_size // int(r) for r in attention_resolutions.split(",") if r.strip())


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(N,) -> (N, dim): [cos(t·f_i), sin(t·f_i)] with f_i = max_period^(-i/half) (Transformer positional code)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, 1)) if dim % 2 else embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the activation dtype (guided-diffusion ``normalization``)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Upsample(nn.Module):
    """Nearest ×2, then an optional 3×3 conv (``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)
        self.use_conv = use_conv

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Strided 3×3 conv or 2×2 average pool (``op``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        if not use_conv and out_channels != channels:
            raise ValueError("average-pool downsampling cannot change the channel count")
        self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """GN-SiLU-conv, + timestep embedding (added, or as AdaGN scale/shift), GN-SiLU-dropout-conv(zero), + skip."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(norm_groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(norm_groups, out_channels), nn.SiLU(), nn.Dropout(p=dropout),
            _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def _qkv_attention(qkv: Tensor, num_heads: int, new_order: bool) -> Tensor:
    """(N, 3·H·C, L) -> (N, H·C, L) softmax attention. ``new_order``: qkv split before heads (QKVAttention);
    else heads split first (QKVAttentionLegacy) — the two layouts of official checkpoints."""
    n, width, length = qkv.shape
    ch = width // (3 * num_heads)
    if new_order:
        q, k, v = (part.reshape(n * num_heads, ch, length) for part in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(n * num_heads, 3 * ch, length).split(ch, dim=1)
    scale = 1 / math.sqrt(math.sqrt(ch))  # scale q and k separately: more stable in fp16
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(n, -1, length)


class AttentionBlock(nn.Module):
    """Self-attention over all positions: x + proj_out(attention(qkv(GN(x)))), 1-d 1×1 convs as official."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1,
                 use_new_attention_order: bool = False, norm_groups: int = 32) -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"{channels} channels are not divisible by num_head_channels={num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.new_order = use_new_attention_order
        self.norm = GroupNorm32(norm_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        n, c, *spatial = x.shape
        flat = x.reshape(n, c, -1)
        h = _qkv_attention(self.qkv(self.norm(flat)), self.num_heads, self.new_order)
        return (flat + self.proj_out(h)).reshape(n, c, *spatial)


class TimestepEmbedSequential(nn.Sequential):
    """A Sequential whose ResBlocks also receive the timestep embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, AttentionBlock)) else layer(x)
        return x


class UNetModel(nn.Module):
    """The ADM denoiser ε_θ(x_t, t[, y]) -> (N, out_channels, H, W); ``out_channels`` = 2·in with learned sigma.

    Arguments mirror guided-diffusion's ``create_model`` flags; ``channel_mult`` is a string ('' = auto) or tuple.
    ``dtype`` (torch.float16/bfloat16) runs the blocks under that precision while the embedding MLP and output head
    stay float32, like the official ``use_fp16``; on CPU use bfloat16.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: str,
        dropout: float = 0.0,
        channel_mult: str | Sequence[float] = "",
        num_classes: int | None = None,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
        conv_resample: bool = True,
        norm_groups: int = 32,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        mult = parse_channel_mult(image_size, channel_mult)
        attention_ds = attention_downsample_rates(image_size, attention_resolutions)
        num_heads_upsample = num_heads if num_heads_upsample == -1 else num_heads_upsample
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels, self.num_classes, self.dtype = model_channels, num_classes, dtype
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res(ch_in: int, ch_out: int, **kw: bool) -> ResBlock:
            return ResBlock(ch_in, emb_dim, dropout, ch_out, use_scale_shift_norm, norm_groups=norm_groups, **kw)

        def attn(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, num_head_channels, use_new_attention_order, norm_groups)

        ch = int(mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_channels, ds = [ch], 1
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(m * model_channels))]
                ch = int(m * model_channels)
                if ds in attention_ds:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, num_heads), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), int(m * model_channels))]
                ch = int(m * model_channels)
                if ds in attention_ds:
                    layers.append(attn(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(
            GroupNorm32(norm_groups, ch), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    def forward(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        """x (N, C, H, W), timesteps (N,) original step indices, y (N,) class labels for class-conditional models."""
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass class labels y exactly when the model is class-conditional (class_cond)")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        with _autocast(x.device, self.dtype):
            h, skips = x, []
            for block in self.input_blocks:
                h = block(h, emb)
                skips.append(h)
            h = self.middle_block(h, emb)
            for block in self.output_blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.float())


class AttentionPool2d(nn.Module):
    """CLIP-style attention pooling: the mean token (plus learned positions) attends over all positions."""

    def __init__(self, spatial_dim: int, embed_dim: int, num_head_channels: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(embed_dim, spatial_dim**2 + 1) / embed_dim**0.5)
        self.qkv_proj = nn.Conv1d(embed_dim, 3 * embed_dim, 1)
        self.c_proj = nn.Conv1d(embed_dim, output_dim, 1)
        self.num_heads = embed_dim // num_head_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, *_ = x.shape
        x = x.reshape(n, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1) + self.positional_embedding[None].to(x.dtype)
        x = _qkv_attention(self.qkv_proj(x), self.num_heads, new_order=True)
        return self.c_proj(x)[:, :, 0]


class EncoderUNetModel(nn.Module):
    """The ADM noisy-image classifier p_φ(y | x_t, t): the UNet's encoder half + attention pooling (ADM Sec. 4)."""

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: str,
        channel_mult: str | Sequence[float] = "",
        num_head_channels: int = 64,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        mult = parse_channel_mult(image_size, channel_mult)
        attention_ds = attention_downsample_rates(image_size, attention_resolutions)
        self.model_channels = model_channels
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(ch_in: int, ch_out: int, **kw: bool) -> ResBlock:
            return ResBlock(ch_in, emb_dim, 0.0, ch_out, use_scale_shift_norm, norm_groups=norm_groups, **kw)

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, 1, num_head_channels, False, norm_groups)

        ch = int(mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        ds = 1
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(m * model_channels))]
                ch = int(m * model_channels)
                if ds in attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
            if level != len(mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, True, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch), res(ch, ch))
        self.out = nn.Sequential(
            GroupNorm32(norm_groups, ch),
            nn.SiLU(),
            AttentionPool2d(image_size // ds, ch, num_head_channels, out_channels),
        )

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        """Class logits (N, out_channels)."""
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
        return self.out(self.middle_block(h, emb))


@contextlib.contextmanager
def _autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
