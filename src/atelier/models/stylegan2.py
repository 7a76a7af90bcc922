"""A StyleGAN2-type generator and residual discriminator: Karras, Laine, Aittala, Hellsten, Lehtinen & Aila,
"Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020 (arXiv:1912.04958), with the class-conditional
mapping and projection discriminator of StyleGAN2-ADA (Karras et al., NeurIPS 2020, arXiv:2006.06676). Written
from the papers; NVIDIA's code (non-commercial licence) was read for ideas only.

    mapping    z (+ embed(y)) -> normalise -> [FC + lrelu] * L (lr x 0.01) -> w            (B, w_dim)
    synthesis  const (C, s, s) -> StyleConv -> ToRGB; per resolution: [StyleConv up x2, StyleConv] -> ToRGB,
               summed over resolutions ("skip" outputs, the paper's config E)              (B, C, H, W)
    D          fromRGB -> [residual block, down x2] * n -> minibatch std -> conv -> FC -> FC -> logit (+ cmap)

Every weight is stored at unit scale and multiplied by its He constant at run time (equalized learning
rate, Karras et al. 2018), so Adam's per-parameter step means the same for every layer. Activations are
leaky ReLU(0.2) times sqrt(2), which keeps unit variance.

The modulated convolution is written for CPU speed as ``conv(x * style, W) / sigma`` with one shared
weight (channels_last and bf16 friendly): the same sums as convolving each sample with its own modulated
and demodulated weight (the paper's per-sample grouped convolution, slow on CPUs), since a per-input-channel
style commutes with the convolution and demodulation is a per-output-channel scale (see :class:`StyleConv`,
which also defers that scale to the next layer; tests check both against the paper's formulation).

Truncation (psi, Karras et al. 2019 sec. 5) moves w towards ``w_avg``, a buffer tracked with momentum
``w_avg_beta`` during training. One global average serves a class-conditional model, as in StyleGAN2-ADA.

Style mixing regularisation lives in ``StyleGAN2Generator.forward`` in training mode: with probability
``mixing_prob`` a sample takes its styles from a second latent from a random layer on (see
:func:`random_mix`). The task therefore needs nothing for it, and ``mixing_prob: 0`` turns it off.

Modes: ``G.train()`` draws fresh noise, mixes styles, updates ``w_avg`` and returns the raw output (a clamp
would stop gradients; StyleGAN2 trains unclamped too); ``G.eval()`` uses the constant noise buffers (a seed
always gives the same image, and the graph exports to ONNX) and clamps to [-1, 1].
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from atelier.models.layers import check_labels
from atelier.models.registry import ModelSpec, Network, register

__all__ = ["StyleGAN2Config", "StyleGAN2Discriminator", "StyleGAN2Generator", "cond_blend", "demodulation",
           "mix_styles", "random_mix", "set_cond_blend", "transitional", "widths"]

class StyleGAN2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # 512 in the paper; 128 keeps the mapping network cheap on a CPU (its cost is per sample, not per pixel).
    z_dim: int = Field(128, ge=1, le=1024)
    w_dim: int = Field(128, ge=1, le=1024)
    # 8 in the paper; 2 in StyleGAN2-ADA's "auto" config, made for any user's (often small) dataset.
    mapping_layers: int = Field(2, ge=1, le=8)
    mapping_lr_mul: float = Field(0.01, gt=0, le=1)
    # Channels at the output resolution, doubling per halving up to width_max (StyleGAN2: 32768 / size, <= 512).
    # 16..128 trains a 64 px model at a useful rate on a 2-core CPU (1.4 GFLOP per image and step).
    width: int = Field(16, ge=1, le=1024)
    width_max: int = Field(128, ge=1, le=1024)
    # D's widths (default: G's).
    d_width: int | None = Field(None, ge=1, le=1024)
    d_width_max: int | None = Field(None, ge=1, le=1024)
    num_classes: int = Field(0, ge=0, le=10_000)
    # Transitional conditioning (Shahbazi et al., "Collapse by Conditioning: Training Class-conditional GANs with
    # Limited Data", ICLR 2022, arXiv:2201.06578): with a few hundred images per class, a conditional GAN collapses
    # to a few images per class early on, and an unconditional one does not. So G and D start unconditional and
    # blend the classes in linearly from cond_start_kimg over cond_ramp_kimg thousand images (0 and 0: conditional
    # from the first step). D then gains an unconditional output next to its projection (Miyato & Koyama 2018's
    # full form), and its projection and G's class embedding are weighted by the blend, a buffer the EMA keeps.
    cond_start_kimg: float = Field(0.0, ge=0)
    cond_ramp_kimg: float = Field(0.0, ge=0)
    mixing_prob: float = Field(0.9, ge=0, le=1)
    w_avg_beta: float = Field(0.995, ge=0, lt=1)
    mbstd_group: int = Field(4, ge=1, le=64)
    # How G doubles its feature maps (see StyleConv): a bilinear resize (StyleGAN2's low-pass) then a 3x3 conv,
    # or a 4x4 transposed conv (cheaper, but showed high-frequency artifacts early in training).
    upsample: Literal["bilinear", "transpose"] = "bilinear"
    # Training options read by atelier.tasks.stylegan2 (not by the networks): lazy path-length regularisation
    # (Karras et al. 2020 sec. 3.2; paper weight 2, every 4 G steps; 0 turns it off), and FreezeD (Mo et al.
    # 2020): D's first ``freeze_d`` blocks (fromRGB counts as the first) keep their weights, for fine-tuning.
    pl_weight: float = Field(0.0, ge=0)
    pl_every: int = Field(4, ge=1)
    freeze_d: int = Field(0, ge=0)
    # Fine-tuning (``atelier finetune``): the checkpoint file of the parent run whose G, D and EMA (w average
    # included) start this one; recorded here so the run's config and card name its parent.
    init_from: str | None = None


GAIN = math.sqrt(2.0)  # leaky ReLU(0.2) gain that keeps unit variance (He et al. 2015)
NoiseMode = Literal["random", "const", "none"]


def plan(resolution: int) -> tuple[int, int]:
    """(start size, number of x2 upsamplings): 32, 64, 128, 256 start from 4x4; 28 (MNIST) from 7x7."""
    start, n = resolution, 0
    while start > 7 and start % 2 == 0:
        start, n = start // 2, n + 1
    if not 4 <= start <= 7 or n < 2:
        raise ValueError(f"data.resolution: stylegan2 supports s * 2^k with s in 4..7 and k >= 2 (e.g. 28, 32, 64, "
                         f"128), got {resolution}")
    return start, n


def widths(resolution: int, width: int, width_max: int) -> dict[int, int]:
    """Channels per feature size: ``width`` at the output, doubling per halving, capped at ``width_max``."""
    start, n = plan(resolution)
    return {start * 2**i: min(width * 2 ** (n - i), width_max) for i in range(n + 1)}


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate; ``lr_mul`` slows it down (the mapping network).
    ``in_gain`` is a constant factor of the input, folded into the weight (see :class:`EqualConv2d`)."""

    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False, in_gain: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul))
        self.w_gain, self.lr_mul, self.activate = in_gain * lr_mul / math.sqrt(in_features), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.w_gain, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * GAIN if self.activate else x


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate ("same" padding); optional 2x average-pool first (``down``).

    With ``activate`` it returns ``lrelu(conv(x))`` *without* the sqrt(2) gain: a constant factor of an
    activation is folded into the consumer's weight instead (its ``in_gain``), which saves a full pass over
    the activations forward and backward. The network is the same function.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, bias: bool = True, activate: bool = False,
                 down: bool = False, in_gain: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.w_gain, self.activate, self.down = in_gain / math.sqrt(in_ch * kernel * kernel), activate, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:  # pooling before the conv: a quarter of the FLOPs of conv-then-pool (cf. blur + stride 2)
            x = F.avg_pool2d(x, 2)
        x = F.conv2d(x, self.weight * self.w_gain, self.bias, padding=self.weight.shape[-1] // 2)
        return F.leaky_relu_(x, 0.2) if self.activate else x


def demodulation(weight: torch.Tensor, styles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """StyleGAN2 eq. 3: 1 / sigma (B, O) for weight (O, I, k, k) modulated by styles (B, I), with
    sigma[b, o]^2 = sum_{i,k} (s[b, i] w[o, i, k])^2 = (s^2 @ (sum_k w^2)^T)[b, o]; fp32 even under autocast."""
    return (styles.float().square() @ weight.float().square().sum(dim=(2, 3)).t() + eps).rsqrt()


class StyleConv(nn.Module):
    """Modulated conv + per-pixel noise + bias + lrelu; ``up`` doubles the size first.

    ``up="bilinear"`` (default): a bilinear 2x resize, which is StyleGAN2's separable [1, 3, 3, 1] low-pass
    filter, then the 3x3 conv at the output size. ``up="transpose"``: a 4x4 stride-2 transposed conv without
    the blur (every output pixel sums 2x2 taps of each input: no uneven overlaps, Odena et al. 2016); 16/36
    of the FLOPs and about 1.2x faster for G on a CPU, but our early MNIST and emoji grids showed diagonal
    high-frequency patterns with it that the bilinear filter avoids.

    Input and output travel as ``(x, scale)``: the true activation is ``x * scale[:, :, None, None]``, with
    ``scale`` (B, C). Leaky ReLU is positively homogeneous, so with y = conv(x * s, w) and d = 1 / sigma,
        lrelu(d y + n + b) * sqrt(2)  =  lrelu(y + sigma (n + b)) * (sqrt(2) d):
    demodulation and gain become the next layer's input scale, which it folds into its styles (a (B, C)
    product), and noise and bias land in one in-place pass: 3 passes over the activations instead of 7.
    """

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, size: int, *, up: str | None = None) -> None:
        super().__init__()
        if up not in (None, "transpose", "bilinear"):
            raise ValueError(f"up must be None, 'transpose' or 'bilinear', got {up!r}")
        k = 4 if up == "transpose" else 3
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)              # styles start at 1 (identity)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros(()))                 # learned, starts silent
        # Fixed noise for noise_mode="const": a seeded sample always renders the same image.
        self.noise_const: torch.Tensor
        self.register_buffer("noise_const", torch.randn(1, 1, size, size))
        self.w_gain, self.up, self.size = 1.0 / math.sqrt(in_ch * k * k), up, size

    def forward(self, x: torch.Tensor, scale: torch.Tensor, w: torch.Tensor,
                noise_mode: NoiseMode) -> tuple[torch.Tensor, torch.Tensor]:
        styles = self.affine(w).float()                                     # (B, I)
        weight = self.weight * self.w_gain
        x = x * (styles * scale).to(x.dtype)[:, :, None, None]              # modulate (and undo the deferral)
        sigma = 1.0 / demodulation(weight, styles)                          # (B, O)
        if self.up == "transpose":
            y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=1)   # (B, O, 2h, 2w)
            # Each output pixel sees 4 of the 16 taps: demodulating over all 16 leaves a variance of 1/4.
            sigma = sigma * 0.5
        else:
            if self.up == "bilinear":  # commutes with the channel scale above, applied on the 4x smaller input
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.conv2d(x, weight, padding=1)                              # (B, O, size, size)
        y = y.add_((sigma * self.bias).to(y.dtype)[:, :, None, None])
        if noise_mode != "none":
            noise = (torch.randn(y.shape[0], 1, self.size, self.size, device=y.device, dtype=y.dtype)
                     if noise_mode == "random" else self.noise_const.to(y.dtype))
            y = y.addcmul_(noise, (sigma * self.noise_strength).to(y.dtype)[:, :, None, None])
        return F.leaky_relu_(y, 0.2), GAIN / sigma


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, not demodulated (the output's scale is meaningful)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.w_gain = 1.0 / math.sqrt(in_ch)

    def forward(self, x: torch.Tensor, scale: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w).float() * self.w_gain * scale               # (B, I), x's deferred scale folded in
        return F.conv2d(x * styles.to(x.dtype)[:, :, None, None], self.weight, self.bias)


def transitional(cfg: StyleGAN2Config) -> bool:
    """Does this (conditional) model blend its classes in during training (``cond_start_kimg``/``cond_ramp_kimg``)?"""
    return bool(cfg.num_classes) and (cfg.cond_start_kimg > 0 or cfg.cond_ramp_kimg > 0)


def cond_blend(cfg: StyleGAN2Config, images_seen: int) -> float:
    """The weight of the class information after ``images_seen`` training images: 0 before ``cond_start_kimg``,
    rising linearly to 1 over ``cond_ramp_kimg`` thousand images."""
    kimg = images_seen / 1000
    if kimg < cfg.cond_start_kimg:
        return 0.0
    return min(1.0, (kimg - cfg.cond_start_kimg) / cfg.cond_ramp_kimg) if cfg.cond_ramp_kimg else 1.0


def set_cond_blend(net: nn.Module, value: float) -> None:
    """Set the class blend of every transitional part of ``net`` (G's mapping, D)."""
    for m in net.modules():
        blend = getattr(m, "cond_weight", None)
        if isinstance(blend, torch.Tensor):
            blend.fill_(value)


class MappingNetwork(nn.Module):
    """z (B, z_dim) [+ class y (B,)] -> w (B, w_dim). As StyleGAN2-ADA's conditional mapping, z and the
    class embedding are each normalised to unit second moment and concatenated; a transitional model weights
    the embedding by its class blend (``cond_weight``, 0 = unconditional)."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, layers: int, lr_mul: float,
                 blend: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        if num_classes:
            self.embed = nn.Parameter(torch.randn(num_classes, w_dim))    # normalised below: scale-free
        self.cond_weight: torch.Tensor | None
        self.register_buffer("cond_weight", torch.ones(()) if blend else None)    # None: not in the state dict
        dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activate=True)
                                   for a, b in itertools.pairwise(dims)])

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.num_classes:
            e = normalize_2nd_moment(self.embed[y])
            x = torch.cat([x, e if self.cond_weight is None else e * self.cond_weight], dim=1)
        return self.net(x)


def mix_styles(ws_coarse: torch.Tensor, ws_fine: torch.Tensor, crossover: int) -> torch.Tensor:
    """Layers ``< crossover`` from ``ws_coarse``, the rest from ``ws_fine``; both (B, num_ws, w_dim).
    Low indices drive the low resolutions (pose, shape), high ones the fine detail and colour."""
    return torch.cat([ws_coarse[:, :crossover], ws_fine[:, crossover:]], dim=1)


def random_mix(ws: torch.Tensor, ws2: torch.Tensor, prob: float) -> torch.Tensor:
    """Style mixing regularisation (StyleGAN sec. 3.1): with probability ``prob`` a sample switches from ``ws``
    to ``ws2`` at a crossover layer drawn uniformly in [1, num_ws); drawn per sample from the global generator."""
    B, L = ws.shape[:2]
    cutoff = torch.randint(1, L, (B,), device=ws.device)
    cutoff = torch.where(torch.rand(B, device=ws.device) < prob, cutoff, L)
    take2 = torch.arange(L, device=ws.device)[None, :] >= cutoff[:, None]   # (B, L)
    return torch.where(take2[:, :, None], ws2, ws)


class StyleGAN2Generator(Network):
    """``G(z, y=None, psi=1.0, noise_mode=None) -> (B, C, H, W)``; ``G.mapping`` and ``G.synthesis`` for the
    latent tools. ``noise_mode=None`` means "random" in training and "const" in eval."""

    supports_truncation = True  # the loaded Generator's --truncation asks for it

    def __init__(self, cfg: StyleGAN2Config, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        if channels not in (1, 3, 4):
            raise ValueError(f"data.channels must be 1, 3 or 4 (RGBA) for model stylegan2, got {channels}")
        chans = widths(resolution, cfg.width, cfg.width_max)
        z_dim, w_dim, num_classes, upsample = cfg.z_dim, cfg.w_dim, cfg.num_classes, cfg.upsample
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.mixing_prob, self.w_avg_beta = cfg.mixing_prob, cfg.w_avg_beta
        self.map = MappingNetwork(z_dim, w_dim, num_classes, cfg.mapping_layers, cfg.mapping_lr_mul,
                                  blend=transitional(cfg))
        self.w_avg: torch.Tensor
        self.register_buffer("w_avg", torch.zeros(w_dim))
        sizes = sorted(chans)
        self.const = nn.Parameter(torch.randn(1, chans[sizes[0]], sizes[0], sizes[0]))
        self.convs = nn.ModuleList([StyleConv(chans[sizes[0]], chans[sizes[0]], w_dim, sizes[0])])
        self.torgbs = nn.ModuleList([ToRGB(chans[sizes[0]], channels, w_dim)])
        for lo, hi in itertools.pairwise(sizes):
            self.convs.append(StyleConv(chans[lo], chans[hi], w_dim, hi, up=upsample))
            self.convs.append(StyleConv(chans[hi], chans[hi], w_dim, hi))
            self.torgbs.append(ToRGB(chans[hi], channels, w_dim))
        # One w per modulated layer; a ToRGB shares its index with the next block's first conv (StyleGAN2).
        self.num_ws = len(self.convs) + 1
        self.sizes = sizes

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(batch, self.z_dim, generator=g)
        return (z, torch.arange(batch) % self.num_classes) if self.num_classes else (z,)

    def ws_index(self, size: int) -> int:
        """The first w index used at feature size ``size``: ``mix_styles(a, b, G.ws_index(16))`` takes the 4-8 px
        (coarse) styles from ``a`` and everything from 16 px on from ``b``."""
        if size not in self.sizes:
            raise ValueError(f"feature sizes of this generator are {self.sizes}, got {size}")
        return max(0, 2 * self.sizes.index(size) - 1)

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None, psi: float = 1.0,
                cutoff: int | None = None, update_w_avg: bool = False) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim); truncation moves layers ``< cutoff`` (all: None) towards w_avg."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        check_labels(y, self.num_classes, z.shape[0])
        w = self.map(z, y)                                                   # (B, w_dim)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = w[:, None, :].expand(-1, self.num_ws, -1)                      # (B, num_ws, w_dim)
        if psi != 1.0:
            k = self.num_ws if cutoff is None else cutoff
            ws = torch.cat([self.w_avg.to(ws.dtype).lerp(ws[:, :k], psi), ws[:, k:]], dim=1)
        return ws

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode | None = None) -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> image (B, C, H, W); raw (unclamped) output."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"expected ws of shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        mode = noise_mode or ("random" if self.training else "const")
        x = self.const.expand(ws.shape[0], -1, -1, -1)                      # (B, C0, s, s)
        if self.const.is_contiguous(memory_format=torch.channels_last) and self.const.shape[1] > 1:
            x = x.contiguous(memory_format=torch.channels_last)             # keep the model's layout
        scale = torch.ones(x.shape[:2], device=x.device)                    # (B, C0): see StyleConv
        x, scale = self.convs[0](x, scale, ws[:, 0], mode)
        img = self.torgbs[0](x, scale, ws[:, 1])                            # (B, C, s, s)
        for i, rgb in enumerate(self.torgbs[1:], start=1):
            x, scale = self.convs[2 * i - 1](x, scale, ws[:, 2 * i - 1], mode)   # up x2
            x, scale = self.convs[2 * i](x, scale, ws[:, 2 * i], mode)
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + rgb(x, scale,
                                                                                                ws[:, 2 * i + 1])
        return img

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, psi: float = 1.0,
                noise_mode: NoiseMode | None = None) -> torch.Tensor:
        if self.training and self.mixing_prob > 0:
            B = z.shape[0]
            z2 = torch.randn_like(z)
            ws = self.mapping(torch.cat([z, z2]), None if y is None else torch.cat([y, y]), psi, update_w_avg=True)
            ws = random_mix(ws[:B], ws[B:], self.mixing_prob)
        else:
            ws = self.mapping(z, y, psi, update_w_avg=self.training)
        img = self.synthesis(ws, noise_mode)
        return img if self.training else img.clamp(-1.0, 1.0)


def minibatch_std(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the feature std over groups of samples (Karras et al. 2018, ProGAN sec. 3), averaged to
    ``num_channels`` maps. Groups are runs of consecutive samples (StyleGAN2 strides them), so a batch that
    is reals then fakes, as the trainer's one D call makes, never mixes the two in a group."""
    B, C, H, W = x.shape
    g = min(group_size, B)
    while B % g:
        g -= 1
    y = x.float().reshape(B // g, g, num_channels, C // num_channels, H, W)
    y = ((y - y.mean(dim=1, keepdim=True)).square().mean(dim=1) + 1e-8).sqrt().mean(dim=(2, 3, 4))   # (B/g, F)
    y = y[:, None, :, None, None].expand(-1, g, -1, H, W).reshape(B, num_channels, H, W)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class DBlock(nn.Module):
    """Residual block, halving the size: (conv3x3, pool + conv3x3) + pool + conv1x1 skip, scaled by 1/sqrt(2).

    The 1/sqrt(2) cancels the sqrt(2) gain of the main branch's last activation and goes into the skip's
    weight, so the sum needs no scaling pass; ``in_gain`` is the input's deferred gain (from fromRGB)."""

    def __init__(self, in_ch: int, out_ch: int, in_gain: float = 1.0) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3, activate=True, in_gain=in_gain)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, activate=True, down=True, in_gain=GAIN)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False, down=True, in_gain=in_gain * math.sqrt(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x).add_(self.conv1(self.conv0(x)))   # skip / sqrt(2) + lrelu(.) * sqrt(2) / sqrt(2)


class StyleGAN2Discriminator(Network):
    """``D(x, y=None) -> (B, 1)`` logits. A conditional D projects its last features on a normalised class
    embedding (StyleGAN2-ADA's cmap; Miyato & Koyama 2018) instead of one unconditional output."""

    def __init__(self, cfg: StyleGAN2Config, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        chans = widths(resolution, cfg.d_width or cfg.width, cfg.d_width_max or cfg.width_max)
        num_classes = self.num_classes = cfg.num_classes
        self.mbstd_group = cfg.mbstd_group
        sizes = sorted(chans, reverse=True)
        self.from_rgb = EqualConv2d(channels, chans[resolution], 1, activate=True)
        self.blocks = nn.Sequential(*[DBlock(chans[hi], chans[lo], in_gain=GAIN if hi == resolution else 1.0)
                                      for hi, lo in itertools.pairwise(sizes)])
        c, s = chans[sizes[-1]], sizes[-1]
        self.conv = EqualConv2d(c + 1, c, 3, activate=True)
        self.fc = EqualLinear(c * s * s, c, activate=True, in_gain=GAIN)
        self.out = EqualLinear(c, c if num_classes else 1)
        if num_classes:
            self.embed = nn.Parameter(torch.randn(num_classes, c))
        blend = transitional(cfg)
        self.cond_weight: torch.Tensor | None
        self.register_buffer("cond_weight", torch.ones(()) if blend else None)
        self.uncond = EqualLinear(c, 1) if blend else None                  # the unconditional output

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        (x,) = super().example_inputs(batch)
        return (x, torch.arange(batch) % self.num_classes) if self.num_classes else (x,)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, self.num_classes, x.shape[0])
        h = self.blocks(self.from_rgb(x))                                   # (B, c, s, s)
        h = self.conv(minibatch_std(h, self.mbstd_group))
        h = self.fc(h.flatten(1))
        out = self.out(h)                                                   # (B, 1) or (B, c)
        if not self.num_classes:
            return out
        cmap = normalize_2nd_moment(self.embed[y])                          # (B, c)
        proj = (out * cmap.to(out.dtype)).sum(dim=1, keepdim=True) / math.sqrt(cmap.shape[1])
        if self.uncond is None or self.cond_weight is None:
            return proj
        return self.uncond(h) + proj * self.cond_weight.to(proj.dtype)


register(ModelSpec(name="stylegan2", config=StyleGAN2Config,
                   networks={"G": StyleGAN2Generator, "D": StyleGAN2Discriminator}))
