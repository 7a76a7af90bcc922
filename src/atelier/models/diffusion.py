"""Diffusion and flow-matching denoisers: a ``diffusers.UNet2DModel`` (the U-Net of Ho, Jain & Abbeel,
"Denoising Diffusion Probabilistic Models", NeurIPS 2020, arXiv:2006.11239) behind atelier's config.

    x_t (B, C, H, W), t (B,) -> [ResNet blocks (+ self-attention at ``attention_resolutions``), conv
    stride 2] x levels -> mid block (ResNet, attention, ResNet) -> mirrored up path with skips
    -> output (B, C, H, W): the noise, the velocity or the flow velocity, per ``prediction``

The objective (``prediction``):
  * ``epsilon``: the noise (Ho et al. 2020), on a variance-preserving path x_t = a_t x0 + s_t eps with
    a_t^2 + s_t^2 = 1 and a_t^2 = prod(1 - beta) from the ``linear`` betas of Ho et al. or the
    ``cosine`` schedule of Nichol & Dhariwal, "Improved DDPM", ICML 2021 (diffusers' squaredcos_cap_v2).
  * ``v_prediction``: v = a_t eps - s_t x0 on the same path (Salimans & Ho, "Progressive Distillation",
    ICLR 2022).
  * ``flow``: rectified flow / flow matching (Liu et al., ICLR 2023; Lipman et al., ICLR 2023):
    x_t = (1 - t) x0 + t eps for t in [0, 1], target velocity eps - x0; the network sees t * T.
    ``schedule`` does not apply (the path is fixed); diffusers' FlowMatchEuler conventions.

Class conditioning (``num_classes`` > 0) adds a class embedding with one extra "null" class (index
``num_classes``) that training substitutes with probability ``label_dropout``, so one network is both
the conditional and the unconditional model of classifier-free guidance (Ho & Salimans 2022).

diffusers is an optional extra (``atelier[diffusion]``): it is imported on first use, through
:func:`import_diffusers`, which switches the Hugging Face hub offline first.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from atelier.errors import ConfigError
from atelier.models.registry import ModelSpec, Network, register
from atelier.utils import require_extra

__all__ = ["DiffusionConfig", "DiffusionUNet", "import_diffusers", "null_class", "unet_kwargs"]

# Hub settings read when huggingface_hub is imported: atelier never downloads or phones home.
HUB_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DIFFUSERS_NO_ADVISORY_WARNINGS": "1",
                   "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def import_diffusers() -> Any:
    """``import diffusers`` with the hub offline and telemetry off, or one clear line naming the extra.

    The variables are set before the import because huggingface_hub reads them once, when imported;
    every ``from_pretrained`` atelier calls also passes ``local_files_only=True``.
    """
    os.environ.update(HUB_OFFLINE_ENV)
    return require_extra("diffusers", "diffusion", "diffusion models")


class DiffusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # U-Net widths per level (one stride-2 step between levels): 32 px with 3 levels has 32, 16, 8 px maps.
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = Field(1, ge=1, le=8)
    # Feature sizes (px) whose down/up blocks carry self-attention; the mid block always has it.
    attention_resolutions: tuple[int, ...] = (8,)
    attention_head_dim: int = Field(32, ge=1)
    norm_num_groups: int = Field(8, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # > 0: class-conditional, with one more "null" embedding for classifier-free guidance.
    num_classes: int = Field(0, ge=0, le=10_000)
    # Probability that training replaces a label with the null class (Ho & Salimans 2022 use 0.1-0.2).
    label_dropout: float = Field(0.1, ge=0.0, le=1.0)
    prediction: Literal["epsilon", "v_prediction", "flow"] = "epsilon"
    # Variance-preserving noise schedule of epsilon / v_prediction models (unused by flow).
    schedule: Literal["linear", "cosine"] = "cosine"
    num_train_timesteps: int = Field(1000, ge=10, le=100_000)
    # Flow only: how training draws t in [0, 1]: uniform (Liu et al.) or logit-normal (Esser et al.,
    # "Scaling Rectified Flow Transformers", ICML 2024: more weight on the middle of the path).
    flow_timesteps: Literal["uniform", "logit_normal"] = "uniform"
    # Defaults of `atelier sample`, the progress grids and FID during training (each call may choose others):
    # the sampler (dpm++ = DPM-Solver++(2M); euler; ddim; ddpm), its steps, and the classifier-free guidance
    # scale of a class-conditional model (1: the conditional model alone; 0: the unconditional one).
    sampler: Literal["ddpm", "ddim", "dpm++", "euler"] = "dpm++"
    sample_steps: int = Field(20, ge=1, le=100_000)
    guidance: float = Field(1.0, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _check(self) -> DiffusionConfig:
        if not self.block_out_channels or any(c < 1 for c in self.block_out_channels):
            raise ValueError(f"block_out_channels must be positive widths, one per level, got "
                             f"{list(self.block_out_channels)}")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"every width in block_out_channels must be a multiple of norm_num_groups "
                             f"({self.norm_num_groups}); {bad[0]} is not")
        if self.prediction == "flow" and self.sampler in ("ddpm", "ddim"):
            raise ValueError(f"model.sampler {self.sampler} integrates epsilon / v models; a flow model samples "
                             "with euler or dpm++")
        if self.sampler == "ddpm" and self.sample_steps > self.num_train_timesteps:
            raise ValueError(f"model.sample_steps: ddpm takes at most num_train_timesteps "
                             f"({self.num_train_timesteps}) steps")
        return self


def null_class(cfg: DiffusionConfig) -> int:
    """The label of the "no class" embedding (classifier-free guidance's unconditional model)."""
    if not cfg.num_classes:
        raise ConfigError("this diffusion model is unconditional; it has no null class")
    return cfg.num_classes


def unet_kwargs(*, resolution: int, channels: int, block_out_channels: tuple[int, ...] | list[int],
                layers_per_block: int, attention_resolutions: tuple[int, ...] | list[int], attention_head_dim: int,
                norm_num_groups: int, dropout: float, num_classes: int) -> dict[str, Any]:
    """``diffusers.UNet2DModel`` constructor arguments for atelier's options (checked against the resolution)."""
    if channels not in (1, 3, 4):
        raise ConfigError(f"diffusion models take 1, 3 or 4 image channels, got {channels}")
    levels = len(block_out_channels)
    sizes = [resolution // 2**i for i in range(levels)]
    if resolution % 2 ** (levels - 1):
        raise ConfigError(f"{levels} U-Net levels halve the image {levels - 1} times: the resolution must be a "
                          f"multiple of {2 ** (levels - 1)}, got {resolution} (pad the images or use fewer levels)")
    extra = sorted(set(attention_resolutions) - set(sizes))
    if extra:
        raise ConfigError(f"model.attention_resolutions {extra} are not feature sizes of this U-Net at "
                          f"{resolution} px; choose from {sizes}")
    attn = [s in attention_resolutions for s in sizes]
    # Heads = width / attention_head_dim at every level with attention, and in the mid block (the last width).
    bad = [c for c, a in zip(block_out_channels, attn, strict=True) if a and c % attention_head_dim]
    bad += [block_out_channels[-1]] if block_out_channels[-1] % attention_head_dim else []
    if bad:
        raise ConfigError(f"model.attention_head_dim ({attention_head_dim}) must divide the width of every level "
                          f"with attention (and the last, whose mid block attends); {bad[0]} is not a multiple")
    return dict(
        sample_size=resolution, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        # One head per attention_head_dim channels (diffusers' convention: the size of a head).
        attention_head_dim=attention_head_dim, norm_num_groups=norm_num_groups, dropout=dropout,
        num_class_embeds=num_classes + 1 if num_classes else None,
    )


class CPUFloat32Attention:
    """diffusers' attention processor, run in fp32 while CPU bf16 autocast is on (elsewhere it is left alone).

    Under bf16 autocast on a CPU the backward pass of scaled-dot-product attention measured 8x slower than in fp32
    (1.04 s against 0.13 s in 4 steps of the MNIST U-Net, one thread), and it was the largest single cost of the
    step; the attention blocks sit at the lowest resolution, so fp32 there costs little and the convolutions keep
    their bf16 gain (``benchmarks/diffusion_speed.py``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    # The parameters are spelled out: diffusers passes a processor only the keyword arguments its signature names.
    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None) -> torch.Tensor:
        tensors = (hidden_states, encoder_hidden_states, attention_mask, temb)
        if hidden_states.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
            return self.inner(attn, *tensors)
        with torch.autocast("cpu", enabled=False):
            return self.inner(attn, *(t.float() if t is not None and t.is_floating_point() else t for t in tensors))


class DiffusionUNet(Network):
    """The denoiser: ``forward(sample, timestep, class_labels=None) -> output`` (B, C, H, W), a ``UNet2DModel``
    inside.

    Built as every atelier network, ``DiffusionUNet(cfg, resolution=, channels=)`` (``self.config`` rebuilds it
    without pickle); it returns a plain tensor (for ONNX export and DDP) and keeps diffusers unimported until a
    network is built. ``self.unet`` is diffusers' own module: :func:`atelier.diffusion.export_diffusers` saves
    it as is. The objective's fields of ``cfg`` (prediction, schedule, ...) belong to the task and samplers.
    """

    def __init__(self, cfg: DiffusionConfig, *, resolution: int, channels: int) -> None:
        super().__init__(cfg, resolution=resolution, channels=channels)
        kwargs = unet_kwargs(resolution=resolution, channels=channels, block_out_channels=cfg.block_out_channels,
                             layers_per_block=cfg.layers_per_block, attention_resolutions=cfg.attention_resolutions,
                             attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups,
                             dropout=cfg.dropout, num_classes=cfg.num_classes)
        self.num_classes, self.num_train_timesteps = cfg.num_classes, cfg.num_train_timesteps
        # Total downsampling of the U-Net: any height and width that are multiples of it work.
        self.stride = 2 ** (len(cfg.block_out_channels) - 1)
        d = import_diffusers()
        self.unet = d.UNet2DModel(**kwargs)
        procs = d.models.attention_processor
        for m in self.unet.modules():
            if isinstance(m, procs.Attention):
                m.set_processor(CPUFloat32Attention(procs.AttnProcessor2_0()))

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """x_t, float timesteps in [0, T) and, for a class-conditional net, labels up to the null class."""
        (x,) = super().example_inputs(batch)
        g = torch.Generator().manual_seed(1)
        t = torch.rand(batch, generator=g) * (self.num_train_timesteps - 1)
        if not self.num_classes:
            return (x, t)
        y = torch.arange(batch) % (self.num_classes + 1)
        y[-1] = self.num_classes                     # the largest label, so exporters see the whole range
        return (x, t, y)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        # sample: (B, C, H, W) x_t; timestep: (B,) or scalar, float or int; class_labels: (B,) in [0, num_classes]
        if sample.ndim != 4 or sample.shape[1] != self.channels:
            raise ValueError(f"expected images of shape (B, {self.channels}, H, W), got {tuple(sample.shape)}")
        if self.num_classes and class_labels is None:
            raise ValueError(f"this denoiser is class-conditional ({self.num_classes} classes + null class "
                             f"{self.num_classes}): pass class_labels")
        if not self.num_classes and class_labels is not None:
            raise ValueError("this denoiser is unconditional; it takes no class_labels")
        return self.unet(sample, timestep, class_labels=class_labels, return_dict=False)[0]


register(ModelSpec(name="diffusion", config=DiffusionConfig, networks={"unet": DiffusionUNet}))
