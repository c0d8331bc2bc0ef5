"""ADA's differentiable augmentation pipeline (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data", NeurIPS, Appendix B; semantics of NVlabs/stylegan2-ada-pytorch ``training/augment.py``; spec
stylegan2_base.md §2.3).

Every op is applied to each sample independently with probability ``multiplier * p`` (multipliers are the
constructor arguments; the presets set the enabled ones to 1). The stages run in the paper's order:

    blit     x-flip, 90-degree rotations, integer translation
    geom     isotropic scale, pre-rotation, anisotropic scale, post-rotation, fractional translation
             (both stages compose into one inverse 3x3 matrix per sample, executed by one resampling:
             reflect pad -> 2x up with the sym6 low-pass -> bilinear ``F.grid_sample`` -> 2x down)
    color    brightness, contrast, luma flip, hue rotation, saturation (one 4x4 matrix per sample)
    filter   4-band image-space equaliser built from sym2 (gains 2^N(0, 1), power normalised)
    noise    additive Gaussian noise, sigma = |N(0, 0.1^2)|
    cutout   a zeroed square of half the image size

Every operation is differentiable in the images to second order (R1 is taken through the pipe).

Differences from the official pipe, by design:
- A sample whose drawn transform is exactly the identity skips that stage, and a stage no sample needs is not run,
  so ``p == 0`` returns the input tensor itself. The official pipe resamples and colour-multiplies every image
  whenever the geometric/colour ops exist, so its p=0 output differs from the input by up to ~4e-6 (spec §11).
  Likewise samples without a geometric transform are not resampled when others in the batch are.
- A sample whose geometric transform only moves whole pixels (x-flip, 90-degree turns, integer translation and
  their compositions) is copied pixel for pixel (reflected at the borders like the official padding). The official
  pipe sends these through the sym6 up/down resampler as well, and since sym6 is not symmetric a mirrored image
  comes back shifted by ~0.1 px and blurred (error max 0.32, mean 0.07 on U(-1, 1) noise, 32 px). Samples with
  any general geometric op (scale, rotation, anisotropy, fractional translation) take the official single
  resampling, the whole-pixel part included, so their output matches the official execution to float precision.
- The random parameters are drawn on the CPU (float64) and moved to the images' device as one small tensor per
  stage, so the data-dependent skipping costs no device synchronisation (reading ``p`` costs one); the official
  pipe draws on the device. Only the noise field itself is drawn on the device.
- The image filter reflect-pads by repeated reflection, which also works for images smaller than the 43-tap filter
  (the official ``F.pad(mode='reflect')`` fails below 22 pixels).
- ``F.grid_sample`` is used directly (double backward works on torch >= 2), not the official ``grid_sample_gradfix``.

Separable filtering is self-contained (``common.ops`` was not available when this was written): images up to 64 px
use small dense per-axis matrices (fast on CPU BLAS), larger ones depthwise convolutions (``_upsample2x`` /
``_downsample2x``) with exactly the semantics of ``upfirdn2d.upsample2d(x, f, up=2)`` and
``upfirdn2d.downsample2d(x, f, down=2, padding=-6, flip_filter=True)``, so either can be swapped for the shared ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Wavelet low-pass (decomposition) filters, normalised to sum sqrt(2).
# sym2 equals Daubechies' db2, whose coefficients have the closed form (1 -+ sqrt3, 3 -+ sqrt3) / (4 sqrt2)
# (Daubechies 1988; "Ten Lectures on Wavelets" 1992, Table 6.1), listed here in PyWavelets' dec_lo order.
_SQRT3 = math.sqrt(3.0)
SYM2 = tuple(c / (4 * math.sqrt(2.0)) for c in (1 - _SQRT3, 3 - _SQRT3, 3 + _SQRT3, 1 + _SQRT3))
# sym6 (least-asymmetric Daubechies wavelet with 6 vanishing moments) has no closed form; the published values of
# PyWavelets ``pywt.Wavelet('sym6').dec_lo`` (from Daubechies 1992, Table 6.3), also used by the official
# augment.py. tests/common/test_stylegan2_augment.py checks sum, orthonormality and the 6 vanishing moments.
SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)

# Expected power of the four image-filter bands (low -> high), a 1/f spectrum (paper App. B, official augment.py).
FILTER_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)

_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
# official train.py ``augpipe_specs``
AUGPIPE_PRESETS: dict[str, dict[str, float]] = {
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": dict(imgfilter=1),
    "noise": dict(noise=1),
    "cutout": dict(cutout=1),
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1, "cutout": 1},
}


def filter_bank(lowpass: tuple[float, ...] = SYM2, levels: int = 3) -> Tensor:
    """Octave filter bank ``[levels + 1, taps]`` (float64) whose rows sum to a unit impulse.

    With the half-band pair L(z) = H(z) H(1/z) / 2 and B(z) = H(-z) H(-1/z) / 2 of the orthogonal low-pass H (so
    L + B = 1), row 0 is L(z^4) L(z^2) L(z) and row j >= 1 is B(z^(2^(levels-j))) times the low-passes of the finer
    octaves: row ``levels`` is the finest band B(z). Every row is zero-padded symmetrically to the longest one.
    For sym2 and 3 levels this is the official ``Hz_fbank`` [4, 43].
    """
    h = torch.tensor(lowpass, dtype=torch.float64)
    alternating = torch.tensor([(-1.0) ** n for n in range(len(h))], dtype=torch.float64)
    low = _convolve(h, h.flip(0)) / 2
    high = _convolve(h * alternating, (h * alternating).flip(0)) / 2
    rows = [torch.ones(1, dtype=torch.float64)]  # the whole spectrum, split below octave by octave
    for _ in range(levels):
        coarse = [_convolve(_dilate(row, 2), low) for row in rows]  # existing bands move one octave down
        rows = coarse + [high]
    width = max(len(row) for row in rows)
    return torch.stack([F.pad(row, [(width - len(row)) // 2] * 2) for row in rows])


def _convolve(a: Tensor, b: Tensor) -> Tensor:
    """Full 1-D convolution of two float64 vectors."""
    return F.conv1d(a.view(1, 1, -1), b.flip(0).view(1, 1, -1), padding=len(b) - 1).view(-1)


def _dilate(h: Tensor, factor: int) -> Tensor:
    """h(z) -> h(z^factor): insert factor - 1 zeros between taps."""
    out = torch.zeros((len(h) - 1) * factor + 1, dtype=h.dtype)
    out[::factor] = h
    return out


@dataclass
class AugmentParams:
    """The per-sample transforms of one call (CPU float64). Identity entries mean "leave this sample alone";
    a field is None when no sample of the batch uses that stage.

    geom: (N, 3, 3) inverse transforms G_inv mapping an output pixel to the input pixel it reads, in pixel units
        about the image centre (x right, y down).
    color: (N, 4, 4) homogeneous RGB transforms C (colour_out = C @ colour_in).
    filter_gains: (N, 4) gains of the filter bands (low -> high); all-ones rows are not filtered.
    noise_std: (N,) standard deviation of the additive noise.
    cutout_center, cutout_size: (N, 2) centres (x, y) in [0, 1) image units, (N,) square sides (0: no cutout).
    """

    geom: Tensor | None = None
    color: Tensor | None = None
    filter_gains: Tensor | None = None
    noise_std: Tensor | None = None
    cutout_center: Tensor | None = None
    cutout_size: Tensor | None = None


class AugmentPipe(nn.Module):
    """ADA augmentation pipeline; ``forward(images (N, C, H, W)) -> (N, C, H, W)`` with C = 1 (grey) or 3.

    Constructor arguments are the official ones: probability multipliers (0 disables an op) and the ops'
    strengths. The overall probability is the buffer ``p`` (1 after construction as in the official class;
    :func:`augment_pipe` and the ADA controller set it). Buffers ``p``, ``Hz_geom`` [12] and ``Hz_fbank`` [4, 43]
    have the official names, so an official snapshot's ``augment_pipe`` state dict loads.
    """

    def __init__(
        self,
        xflip: float = 0,
        rotate90: float = 0,
        xint: float = 0,
        xint_max: float = 0.125,
        scale: float = 0,
        rotate: float = 0,
        aniso: float = 0,
        xfrac: float = 0,
        scale_std: float = 0.2,
        rotate_max: float = 1,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness: float = 0,
        contrast: float = 0,
        lumaflip: float = 0,
        hue: float = 0,
        saturation: float = 0,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1,
        saturation_std: float = 1,
        imgfilter: float = 0,
        imgfilter_bands: tuple[float, ...] | list[float] = (1, 1, 1, 1),
        imgfilter_std: float = 1,
        noise: float = 0,
        cutout: float = 0,
        noise_std: float = 0.1,
        cutout_size: float = 0.5,
    ) -> None:
        super().__init__()
        # blit
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.xint_max = float(xint_max)  # translation range, fraction of the image size
        # general geometry
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std = float(scale_std)  # log2 std of the isotropic scale
        self.rotate_max = float(rotate_max)  # rotation range, 1 = full circle
        self.aniso_std = float(aniso_std)  # log2 std of the anisotropic scale
        self.xfrac_std = float(xfrac_std)  # translation std, fraction of the image size
        # colour
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std = float(brightness_std)  # additive std
        self.contrast_std = float(contrast_std)  # log2 std
        self.hue_max = float(hue_max)  # hue rotation range, 1 = full circle
        self.saturation_std = float(saturation_std)  # log2 std
        # image-space filter and corruptions
        self.imgfilter, self.imgfilter_std = float(imgfilter), float(imgfilter_std)
        self.imgfilter_bands = [float(b) for b in imgfilter_bands]
        if len(self.imgfilter_bands) != len(FILTER_BAND_POWER):
            raise ValueError(f"imgfilter_bands needs {len(FILTER_BAND_POWER)} entries, got {self.imgfilter_bands}")
        self.noise, self.cutout = float(noise), float(cutout)
        self.noise_std, self.cutout_size = float(noise_std), float(cutout_size)

        self.register_buffer("p", torch.ones([]))
        sym6 = torch.tensor(SYM6, dtype=torch.float64)
        self.register_buffer("Hz_geom", (sym6 / sym6.sum()).float())  # = upfirdn2d.setup_filter(sym6)
        self.register_buffer("Hz_fbank", filter_bank(SYM2, levels=len(FILTER_BAND_POWER) - 1).float())

    def forward(self, images: Tensor) -> Tensor:
        """Augment ``images`` (N, C, H, W) with fresh random parameters; returns ``images`` itself when p = 0."""
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe expects (N, C, H, W) images, got shape {tuple(images.shape)}")
        return self.apply(images, self.sample_params(tuple(images.shape)))

    @property
    def uses_color(self) -> bool:
        """Whether any colour op is enabled (they need C = 1 or 3)."""
        return any(m > 0 for m in (self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation))

    # ------------------------------------------------------------------------------------------------------------
    # Parameter sampling (CPU, float64)

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> AugmentParams:
        """Draw every op's per-sample parameters at the current ``p`` for images of ``shape`` (N, C, H, W).

        An op whose probability ``multiplier * p`` is 0 draws nothing; a stage no sample uses is returned as None.
        """
        n, num_channels, height, width = shape
        p = float(self.p)

        def rand(*size: int) -> Tensor:
            return torch.rand(n, *size, dtype=torch.float64, generator=generator)

        def randn(*size: int) -> Tensor:
            return torch.randn(n, *size, dtype=torch.float64, generator=generator)

        def chosen(prob: float) -> Tensor:
            return rand() < prob

        geom = _Composer(3, right=True)  # inverse maps compose output -> input: G_inv = G_inv @ op^-1
        if self.xflip * p > 0:
            flip = torch.floor(rand() * 2) * chosen(self.xflip * p)
            geom.add(_scale2d(1 - 2 * flip, torch.ones(n, dtype=torch.float64)))
        if self.rotate90 * p > 0:
            quarter = (torch.floor(rand() * 4) * chosen(self.rotate90 * p)).long()
            geom.add(_rotate2d(_QUARTER_COS[quarter], _QUARTER_SIN[quarter]))
        if self.xint * p > 0:
            t = (rand(2) * 2 - 1) * self.xint_max * chosen(self.xint * p)[:, None]
            geom.add(_translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height)))
        if self.scale * p > 0:
            s = torch.where(chosen(self.scale * p), torch.exp2(randn() * self.scale_std), 1.0)
            geom.add(_scale2d(1 / s, 1 / s))
        # pre- and post-rotation each with p_rot, so that P(at least one of them) = rotate * p
        p_rot = 1 - math.sqrt(min(max(1 - self.rotate * p, 0.0), 1.0))

        def rotation() -> Tensor:
            theta = (rand() * 2 - 1) * math.pi * self.rotate_max * chosen(p_rot)
            return _rotate2d(torch.cos(theta), torch.sin(theta))

        if self.rotate * p > 0:
            geom.add(rotation())
        if self.aniso * p > 0:
            s = torch.where(chosen(self.aniso * p), torch.exp2(randn() * self.aniso_std), 1.0)
            geom.add(_scale2d(1 / s, s))
        if self.rotate * p > 0:
            geom.add(rotation())
        if self.xfrac * p > 0:
            t = randn(2) * self.xfrac_std * chosen(self.xfrac * p)[:, None]
            geom.add(_translate2d(-t[:, 0] * width, -t[:, 1] * height))

        color = _Composer(4, right=False)  # colour ops apply in order: C = op @ C
        if self.brightness * p > 0:
            color.add(_translate3d(randn() * self.brightness_std * chosen(self.brightness * p)))
        if self.contrast * p > 0:
            color.add(_scale3d(torch.where(chosen(self.contrast * p), torch.exp2(randn() * self.contrast_std), 1.0)))
        if self.lumaflip * p > 0:
            color.add(_luma_reflection(torch.floor(rand() * 2) * chosen(self.lumaflip * p)))
        if self.hue * p > 0 and num_channels > 1:
            color.add(_luma_rotation((rand() * 2 - 1) * math.pi * self.hue_max * chosen(self.hue * p)))
        if self.saturation * p > 0 and num_channels > 1:
            s = torch.where(chosen(self.saturation * p), torch.exp2(randn() * self.saturation_std), 1.0)
            color.add(_saturation(s))

        params = AugmentParams(geom=geom.result(), color=color.result())
        if self.imgfilter * p > 0:
            gains = torch.ones(n, len(FILTER_BAND_POWER), dtype=torch.float64)
            for band, (strength, power) in enumerate(zip(self.imgfilter_bands, FILTER_BAND_POWER)):
                t = torch.where(chosen(self.imgfilter * p * strength), torch.exp2(randn() * self.imgfilter_std), 1.0)
                # amplify one band, then renormalise the expected power sum(power_i * gain_i^2) back to 1
                # (the official normalisation, written so that an untouched band keeps a gain of exactly 1)
                gains = gains / torch.sqrt(1 + power * (t.square() - 1))[:, None]
                gains[:, band] *= t
            params.filter_gains = gains if bool((gains != 1).any()) else None
        if self.noise * p > 0:
            sigma = randn().abs() * self.noise_std * chosen(self.noise * p)
            params.noise_std = sigma if bool((sigma != 0).any()) else None
        if self.cutout * p > 0:
            size = self.cutout_size * chosen(self.cutout * p).double()
            center = rand(2)
            if bool((size != 0).any()):
                params.cutout_center, params.cutout_size = center, size
        return params

    # ------------------------------------------------------------------------------------------------------------
    # Execution

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Run the stages of ``params`` on ``images`` (N, C, H, W); samples with identity entries pass unchanged.

        Raises ValueError for C not in (1, 3) when colour ops are enabled, even at p = 0 (the official pipe fails
        only once a colour transform is drawn).
        """
        n, c, h, w = images.shape
        if self.uses_color and c not in (1, 3):
            raise ValueError(f"colour augmentations need RGB (3 channels) or grey (1 channel) images, got C={c}")
        for name, value in vars(params).items():
            if value is not None and len(value) != n:
                raise ValueError(f"AugmentParams.{name} is for {len(value)} samples, the batch has {n}")
        geom = params.geom
        if geom is not None:
            moved = (geom != torch.eye(3, dtype=geom.dtype)).any(dim=2).any(dim=1)
            blit = _is_pixel_permutation(geom, h, w)
            images = _on_samples(images, moved & blit, lambda x, idx: _blit(x, geom[idx]))
            images = _on_samples(images, moved & ~blit, lambda x, idx: _resample(x, geom[idx], self.Hz_geom))
        if params.color is not None:
            images = _apply_color(images, params.color.to(images.device, images.dtype))
        if params.filter_gains is not None:
            taps = params.filter_gains @ self.Hz_fbank.detach().double().cpu()  # (N, 43) per-sample equalisers
            filtered = (params.filter_gains != 1).any(dim=1)
            images = _on_samples(images, filtered, lambda x, idx: _filter(x, taps[idx]))
        if params.noise_std is not None:
            sigma = params.noise_std.to(images.device, images.dtype).view(n, 1, 1, 1)
            images = images + torch.randn_like(images) * sigma
        if params.cutout_size is not None:
            center = params.cutout_center.to(images.device, images.dtype)
            size = params.cutout_size.to(images.device, images.dtype)
            images = images * _cutout_mask(center, size, h, w)
        return images


def augment_pipe(preset: str, p: float = 0.0) -> AugmentPipe:
    """The official ``--augpipe`` preset (e.g. 'bgc', 'bgcfnc') with overall probability ``p``.

    Fixed-p augmentation (official ``--aug=fixed --p=P``) is this pipe without an :class:`AdaptiveP` controller.
    """
    if preset not in AUGPIPE_PRESETS:
        raise ValueError(f"unknown augment preset {preset!r}; valid presets: {', '.join(AUGPIPE_PRESETS)}")
    pipe = AugmentPipe(**AUGPIPE_PRESETS[preset])
    pipe.p.fill_(p)
    return pipe


# ----------------------------------------------------------------------------------------------------------------
# Matrices (batched, float64; rows = output coordinates)

_QUARTER_COS = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=torch.float64)
_QUARTER_SIN = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=torch.float64)
_LUMA = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) / math.sqrt(3)  # the grey axis of RGB space


def _eye(n: int, size: int) -> Tensor:
    return torch.eye(size, dtype=torch.float64).expand(n, size, size).clone()


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    m = _eye(len(tx), 3)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    m = _eye(len(sx), 3)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(cos: Tensor, sin: Tensor) -> Tensor:
    """Rotation [[cos, -sin], [sin, cos]] in pixel coordinates about the centre."""
    m = _eye(len(cos), 3)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def _translate2d_const(tx: float, ty: float) -> Tensor:
    return _translate2d(torch.tensor([tx], dtype=torch.float64), torch.tensor([ty], dtype=torch.float64))[0]


def _scale2d_const(sx: float, sy: float) -> Tensor:
    return _scale2d(torch.tensor([sx], dtype=torch.float64), torch.tensor([sy], dtype=torch.float64))[0]


def _translate3d(offset: Tensor) -> Tensor:
    """Add ``offset`` (N,) to all three channels."""
    m = _eye(len(offset), 4)
    m[:, :3, 3] = offset[:, None]
    return m


def _scale3d(gain: Tensor) -> Tensor:
    """Multiply all three channels by ``gain`` (N,) (contrast about 0)."""
    m = _eye(len(gain), 4)
    m[:, :3, :3] *= gain[:, None, None]
    return m


def _luma_reflection(flip: Tensor) -> Tensor:
    """Householder reflection I - 2 v v^T about the plane orthogonal to the luma axis, where ``flip`` (N,) is 1."""
    m = _eye(len(flip), 4)
    m[:, :3, :3] -= 2 * flip[:, None, None] * torch.outer(_LUMA, _LUMA)
    return m


def _luma_rotation(theta: Tensor) -> Tensor:
    """Rotation by ``theta`` (N,) about the luma axis (Rodrigues: cos I + sin [v]_x + (1 - cos) v v^T)."""
    vx, vy, vz = _LUMA.tolist()
    cross = torch.tensor([[0.0, -vz, vy], [vz, 0.0, -vx], [-vy, vx, 0.0]], dtype=torch.float64)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    m = _eye(len(theta), 4)
    m[:, :3, :3] = cos * torch.eye(3, dtype=torch.float64) + sin * cross + (1 - cos) * torch.outer(_LUMA, _LUMA)
    return m


def _saturation(s: Tensor) -> Tensor:
    """Keep the luma component, scale the chroma (orthogonal) component by ``s`` (N,)."""
    luma = torch.outer(_LUMA, _LUMA)
    m = _eye(len(s), 4)
    m[:, :3, :3] = luma + (torch.eye(3, dtype=torch.float64) - luma) * s[:, None, None]
    return m


class _Composer:
    """Product of per-sample (N, size, size) matrices that skips ops leaving every sample untouched.

    ``right=True`` appends each op on the right (inverse geometric maps compose output -> input), ``right=False``
    on the left (colour ops, applied in order).
    """

    def __init__(self, size: int, right: bool) -> None:
        self.eye = torch.eye(size, dtype=torch.float64)
        self.right = right
        self.product: Tensor | None = None

    def add(self, m: Tensor) -> None:
        if bool((m == self.eye).all()):
            return
        if self.product is None:
            self.product = m
        else:
            self.product = self.product @ m if self.right else m @ self.product

    def result(self) -> Tensor | None:
        """The composed matrices, or None when every sample's product is the identity."""
        return self.product


# ----------------------------------------------------------------------------------------------------------------
# Image operations


def _on_samples(images: Tensor, active: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``fn(images[idx], idx)`` for the samples where ``active`` (CPU bool (N,)) holds; the rest pass unchanged."""
    idx = active.nonzero().flatten()
    if len(idx) == 0:
        return images
    if len(idx) == len(images):
        return fn(images, idx)
    idx_dev = idx.to(images.device)
    return images.index_copy(0, idx_dev, fn(images.index_select(0, idx_dev), idx))


def _apply_color(images: Tensor, color: Tensor) -> Tensor:
    """colour_out = C[:3, :3] @ colour_in + C[:3, 3]; grey images use the mean of the three rows (official)."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h * w)
    if c == 3:
        x = torch.baddbmm(color[:, :3, 3:], color[:, :3, :3], x)
    else:
        gain = color[:, :3, :3].sum(dim=(1, 2)) / 3  # mean over rows of each row's total weight
        offset = color[:, :3, 3].mean(dim=1)
        x = x * gain.view(n, 1, 1) + offset.view(n, 1, 1)
    return x.reshape(n, c, h, w)


def _cutout_mask(center: Tensor, size: Tensor, height: int, width: int) -> Tensor:
    """(N, 1, H, W) mask that is 0 inside each sample's square (pixel centres within size/2 of the centre)."""
    xs = (torch.arange(width, device=center.device, dtype=center.dtype) + 0.5) / width
    ys = (torch.arange(height, device=center.device, dtype=center.dtype) + 0.5) / height
    keep_x = (xs[None, :] - center[:, :1]).abs() >= size[:, None] / 2  # (N, W)
    keep_y = (ys[None, :] - center[:, 1:]).abs() >= size[:, None] / 2  # (N, H)
    return (keep_x[:, None, :] | keep_y[:, :, None]).unsqueeze(1).to(center.dtype)


def _is_pixel_permutation(g_inv: Tensor, height: int, width: int) -> Tensor:
    """(N,) bool: G_inv maps pixel centres onto pixel centres (x-flips, 90-degree turns, whole-pixel shifts)."""
    linear, shift = g_inv[:, :2, :2], g_inv[:, :2, 2]
    signed_permutation = ((linear == 0) | (linear.abs() == 1)).all(dim=(1, 2)) & (linear.abs().sum(dim=2) == 1).all(1)
    signed_permutation &= (linear.abs().sum(dim=1) == 1).all(dim=1)
    whole_shift = (shift == shift.round()).all(dim=1)
    swaps_axes = linear[:, 0, 0] == 0  # a quarter turn keeps pixel centres on the grid iff H + W is even
    return signed_permutation & whole_shift & (~swaps_axes | ((height + width) % 2 == 0))


def _blit(images: Tensor, g_inv: Tensor) -> Tensor:
    """Exact copy of the input pixel each output pixel maps to, reflected at the borders like the official padding.

    For transforms that pass :func:`_is_pixel_permutation`; a gather, so gradients of any order flow.
    """
    n, c, h, w = images.shape
    g = g_inv.to(images.device, torch.float32)  # integers and half-integers: exact in float32
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(h, device=images.device, dtype=torch.float32) - cy,
        torch.arange(w, device=images.device, dtype=torch.float32) - cx,
        indexing="ij",
    )
    src_x = g[:, 0, 0, None, None] * xs + g[:, 0, 1, None, None] * ys + g[:, 0, 2, None, None] + cx
    src_y = g[:, 1, 0, None, None] * xs + g[:, 1, 1, None, None] * ys + g[:, 1, 2, None, None] + cy
    index = _fold(src_y.round().long(), h) * w + _fold(src_x.round().long(), w)  # (n, H, W)
    flat = images.reshape(n, c, h * w).gather(2, index.view(n, 1, h * w).expand(n, c, h * w))
    return flat.view(n, c, h, w)


def _resample(images: Tensor, g_inv: Tensor, f: Tensor) -> Tensor:
    """Warp (n, C, H, W) images by inverse transforms ``g_inv`` (n, 3, 3) with the official scheme.

    Reflect-pad, upsample 2x with the orthogonal low-pass ``f`` (sym6), bilinear ``F.grid_sample`` at twice the
    resolution, downsample 2x with the same filter (correlation, i.e. the matching analysis filter).
    """
    n, c, h, w = images.shape
    taps = f.shape[0]
    border = taps // 4  # the 2x output keeps this many extra pixels per side for the down-sampler's support
    cx, cy = (w - 1) / 2, (h - 1) / 2
    corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1.0] * 4], dtype=torch.float64)
    reach = g_inv[:, :2] @ corners  # (n, 2, 4): input positions read by the output corners
    # pad so that every sampled position plus 2 * border pixels of filter support lies inside the padded image
    # (reflect padding by at most size - 1)
    px0, py0, px1, py1 = (
        int(math.ceil(min(max(float(extent) + 2 * border - half, 0.0), size - 1)))
        for extent, half, size in (
            ((-reach[:, 0]).max(), cx, w),
            ((-reach[:, 1]).max(), cy, h),
            (reach[:, 0].max(), cx, w),
            (reach[:, 1].max(), cy, h),
        )
    )
    up_h, up_w = 2 * (h + py0 + py1), 2 * (w + px0 + px1)
    out_h, out_w = 2 * (h + 2 * border), 2 * (w + 2 * border)
    # normalised output grid -> pixel coords about the centre -> G_inv -> padded, 2x-upsampled input ->
    # normalised input grid. The +-0.5 terms align the sym6 up/down pair so that G_inv = I gives back the input.
    left = (
        _scale2d_const(2 / up_w, 2 / up_h)
        @ _translate2d_const(-0.5, -0.5)
        @ _scale2d_const(2, 2)
        @ _translate2d_const((px0 - px1) / 2, (py0 - py1) / 2)
    )
    right = _scale2d_const(0.5, 0.5) @ _translate2d_const(0.5, 0.5) @ _scale2d_const(out_w / 2, out_h / 2)
    theta = (left @ g_inv @ right)[:, :2].to(images.device, images.dtype)
    grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
    crop = 2 * border - (taps // 2 - 1)  # the official down-sampler's padding -2 * border, net of its own
    f64 = f.detach().double().cpu()
    if max(h, w) <= _DENSE_MAX_SIDE:
        x = _dense(_pad_up_matrix(h, py0, py1, f64), images, _pad_up_matrix(w, px0, px1, f64))
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return _dense(_down_matrix(out_h, f64, crop), x, _down_matrix(out_w, f64, crop))
    x = _upsample2x(F.pad(images, [px0, px1, py0, py1], mode="reflect"), f)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _downsample2x(x, f, crop)


def _filter(images: Tensor, taps: Tensor) -> Tensor:
    """Filter each sample with its own symmetric separable filter ``taps`` (n, K), reflect-padded (official)."""
    n, c, h, w = images.shape
    k = taps.shape[1]
    if max(h, w) <= _DENSE_MAX_SIDE:
        return _dense(_filter_matrices(h, taps), images, _filter_matrices(w, taps))
    weight = taps.to(images.device, images.dtype).repeat_interleave(c, dim=0)  # one filter per (sample, channel)
    x = _reflect_pad(images.reshape(1, n * c, h, w), k // 2)
    x = F.conv2d(x, weight.view(n * c, 1, k, 1), groups=n * c)
    x = F.conv2d(x, weight.view(n * c, 1, 1, k), groups=n * c)
    return x.reshape(n, c, h, w)


# Images up to this side run the separable filters as products with small dense per-axis matrices (BLAS is 5-20x
# faster than single-channel convolutions on CPU at these sizes); larger images use (depthwise) convolutions.
_DENSE_MAX_SIDE = 64


def _dense(rows: Tensor, images: Tensor, cols: Tensor) -> Tensor:
    """rows @ images @ cols^T on (N, C, H, W) with rows (H', H) / cols (W', W), or per sample (N, H', H)."""
    rows, cols = rows.to(images.device, images.dtype), cols.to(images.device, images.dtype)
    if rows.ndim == 3:
        rows, cols = rows[:, None], cols[:, None]
    return rows @ images @ cols.transpose(-1, -2)


def _pad_up_matrix(size: int, pad0: int, pad1: int, f: Tensor) -> Tensor:
    """(2 (size + pad0 + pad1), size): reflect padding followed by :func:`_upsample2x` along one axis."""
    padded = size + pad0 + pad1
    k = f.shape[0]
    m = torch.arange(2 * padded)[:, None]
    t = m + (k // 2 - 1) - 2 * torch.arange(padded)[None, :]  # tap of f linking input i to output m
    up = torch.where((t >= 0) & (t < k), 2 * f[t.clamp(0, k - 1)], torch.zeros((), dtype=f.dtype))
    source = _fold(torch.arange(-pad0, size + pad1), size)
    return torch.zeros(2 * padded, size, dtype=f.dtype).index_add_(1, source, up)


def _down_matrix(size: int, f: Tensor, crop: int) -> Tensor:
    """(out, size): :func:`_downsample2x` along one axis, out = (size - 2 crop - K) // 2 + 1."""
    k = f.shape[0]
    out = (size - 2 * crop - k) // 2 + 1
    m = torch.zeros(out, size, dtype=f.dtype)
    start = crop + 2 * torch.arange(out)[:, None] + torch.arange(k)[None, :]
    return m.scatter_(1, start, f.expand(out, k).clone())


def _filter_matrices(size: int, taps: Tensor) -> Tensor:
    """(n, size, size): reflect padding by K//2 then correlation with each sample's ``taps`` (n, K)."""
    n, k = taps.shape
    source = _fold(torch.arange(-(k // 2), size + k // 2), size)
    index = source[torch.arange(size)[:, None] + torch.arange(k)[None, :]]  # (size, K)
    m = torch.zeros(n, size, size, dtype=taps.dtype)
    return m.scatter_add_(2, index.expand(n, size, k), taps[:, None, :].expand(n, size, k))


def _fold(index: Tensor, size: int) -> Tensor:
    """Map integer positions onto [0, size) by repeated reflection about the edge pixels (period 2 size - 2)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * size - 2
    index = index.remainder(period)
    return torch.where(index < size, index, period - index)


def _upsample2x(x: Tensor, f: Tensor) -> Tensor:
    """2x upsampling with the 1-D filter ``f`` (sum 1, even length) on both axes, gain 4.

    Same result as ``upfirdn2d.upsample2d(x, f, up=2)``: zero insertion, zero padding [K/2, K/2 - 1], true
    convolution with f. Computed polyphase (even and odd output pixels are two short filters of the input), which
    skips the multiplications by inserted zeros.
    """
    weight = _polyphase_weights(f.to(x.dtype) * 2)  # gain 2 per axis
    return _upsample_axis(_upsample_axis(x, weight, dim=2), weight, dim=3)


def _polyphase_weights(g: Tensor) -> Tensor:
    """(2, L) correlation filters of the even/odd outputs of a zero-inserting 2x upsampler with filter ``g``.

    Upsampled pixel m = 2j + r is sum_q x[j - q] g[2q + r + s] with s = K/2 - 1 (the upsampler's padding);
    both phases are written on the common window q in [-K/4 - 1, K/4] (zero where a phase has no tap) and
    reversed into correlation order.
    """
    k = g.shape[0]
    s = k // 2 - 1
    q = torch.arange(k // 4, -(k // 4) - 2, -1)  # correlation tap a <-> q = q[a]
    rows = []
    for r in (0, 1):
        t = 2 * q + r + s
        valid = (t >= 0) & (t < k)
        rows.append(torch.where(valid.to(g.device), g[t.clamp(0, k - 1).to(g.device)], torch.zeros((), dtype=g.dtype)))
    return torch.stack(rows)


def _upsample_axis(x: Tensor, weight: Tensor, dim: int) -> Tensor:
    """Zero-padded polyphase 2x upsampling of (N, C, H, W) along ``dim`` (2 or 3) with (2, L) phase filters."""
    n, c, h, w = x.shape
    taps = weight.shape[1]
    left = taps // 2 - 1 if taps % 2 == 0 else taps // 2  # window q in [q_lo, q_hi]: pad q_hi left, -q_lo right
    right = taps - 1 - left
    if dim == 2:
        y = F.conv2d(F.pad(x.reshape(n * c, 1, h, w), [0, 0, left, right]), weight.view(2, 1, taps, 1))
        return y.view(n, c, 2, h, w).permute(0, 1, 3, 2, 4).reshape(n, c, 2 * h, w)
    y = F.conv2d(F.pad(x.reshape(n * c, 1, h, w), [left, right]), weight.view(2, 1, 1, taps))
    return y.view(n, c, 2, h, w).permute(0, 1, 3, 4, 2).reshape(n, c, h, 2 * w)


def _downsample2x(x: Tensor, f: Tensor, crop: int) -> Tensor:
    """Crop ``crop`` pixels per side, correlate with the 1-D filter ``f`` on both axes, keep every 2nd pixel.

    Same result as ``upfirdn2d.downsample2d(x, f, down=2, padding=P, flip_filter=True)`` with
    P = -(crop + (K-2)//2) (K even), i.e. the analysis half of the orthogonal pair used by :func:`_upsample2x`.
    """
    n, c, h, w = x.shape
    k = f.shape[0]
    weight = f.to(x.dtype)
    y = x.reshape(n * c, 1, h, w)[:, :, crop : h - crop, crop : w - crop]
    y = F.conv2d(y, weight.view(1, 1, k, 1), stride=(2, 1))
    y = F.conv2d(y, weight.view(1, 1, 1, k), stride=(1, 2))
    return y.reshape(n, c, y.shape[2], y.shape[3])


def _reflect_pad(x: Tensor, pad: int) -> Tensor:
    """Reflect padding (edge pixel not repeated) by ``pad`` on all sides, for any image size (repeated reflection)."""
    h, w = x.shape[-2:]
    if pad < h and pad < w:
        return F.pad(x, [pad] * 4, mode="reflect")
    rows = _fold(torch.arange(-pad, h + pad), h).to(x.device)
    cols = _fold(torch.arange(-pad, w + pad), w).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)
