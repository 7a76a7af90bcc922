"""A tiny Stable Diffusion 1.x-shaped pipeline with random weights, written in the layouts users hold (a diffusers
folder, a single file in the original key layout): no foundation-model weights can be had in tests.

About 87k parameters: a two-level UNet (8 / 16 channels, cross-attention on 16-wide text tokens), a two-level VAE
(so the latent is half the image's side) and a two-layer CLIP text encoder over a 60-token vocabulary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

TOKENS = "abcdefghijklmnopqrstuvwxyz"


def write_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer as SD folders ship it: vocab.json, merges.txt and tokenizer_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in TOKENS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    for merged in ("ca", "cat</w>", "fo", "fox</w>"):
        vocab[merged] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\nf o\nfo x</w>\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77,
                                                              "tokenizer_class": "CLIPTokenizer"}))


def build_folder(root: Path, inpainting: bool = False) -> Path:
    """Save the tiny pipeline as a diffusers folder under ``root`` and return it."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=9 if inpainting else 4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16, norm_num_groups=4,
        attention_head_dim=2)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
        sample_size=64)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=60, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=77, projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    folder = root / ("tiny-sd-inpainting" if inpainting else "tiny-sd")
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text_encoder")
    sched.save_pretrained(folder / "scheduler")
    write_tokenizer(folder / "tokenizer")
    cls = "StableDiffusionInpaintPipeline" if inpainting else "StableDiffusionPipeline"
    index = {"_class_name": cls, "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return folder


# ------------------------------------------------------------------ the original (CompVis) single-file layout
_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_ATTN = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _unet_key(key: str, per_block: int, up_attn: set[int]) -> str:
    """A diffusers UNet key in the original layout (input_blocks / middle_block / output_blocks)."""
    for new, old in _UNET_FIXED.items():
        if key.startswith(new + "."):
            return old + key[len(new):]
    parts = key.split(".")
    rest = ".".join(parts[4:]) if parts[0] in ("down_blocks", "up_blocks") else ".".join(parts[3:])
    if parts[0] == "mid_block":
        idx = {"resnets": 2 * int(parts[2]), "attentions": 1}[parts[1]]
        head = f"middle_block.{idx}"
    elif parts[2] == "downsamplers":
        return f"input_blocks.{(int(parts[1]) + 1) * (per_block + 1)}.0.op.{'.'.join(parts[5:])}"
    elif parts[2] == "upsamplers":
        last = int(parts[1]) * (per_block + 1) + per_block
        return f"output_blocks.{last}.{2 if int(parts[1]) in up_attn else 1}.conv.{'.'.join(parts[5:])}"
    else:
        b, j = int(parts[1]), int(parts[3])
        block = b * (per_block + 1) + j + (1 if parts[0] == "down_blocks" else 0)
        side = "input" if parts[0] == "down_blocks" else "output"
        head = f"{side}_blocks.{block}.{0 if parts[2] == 'resnets' else 1}"
    if "resnets" in key:
        for new, old in _RESNET:
            rest = rest.replace(new, old)
    return f"{head}.{rest}"


def _vae_key(key: str, n_blocks: int) -> str:
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    parts = key.split(".")
    if len(parts) > 2 and parts[1] in ("down_blocks", "up_blocks"):
        b = int(parts[2]) if parts[1] == "down_blocks" else n_blocks - 1 - int(parts[2])
        name = "down" if parts[1] == "down_blocks" else "up"
        if parts[3] == "resnets":
            return f"{parts[0]}.{name}.{b}.block.{'.'.join(parts[4:])}"
        return f"{parts[0]}.{name}.{b}.{'downsample' if name == 'down' else 'upsample'}.{'.'.join(parts[5:])}"
    if len(parts) > 2 and parts[1] == "mid_block":
        if parts[2] == "resnets":
            return f"{parts[0]}.mid.block_{int(parts[3]) + 1}.{'.'.join(parts[4:])}"
        rest = ".".join(parts[4:])
        for new, old in _VAE_ATTN:
            rest = rest.replace(new, old)
        return f"{parts[0]}.mid.attn_1.{rest}"
    return key


def write_single_file(folder: Path, out: Path, parts: tuple[str, ...] = ("unet", "vae", "text_encoder")) -> Path:
    """The diffusers folder's weights as one .safetensors file in the original SD 1.x key layout (what model sites
    distribute): ``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``."""
    from safetensors.torch import load_file, save_file

    unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
    up_attn = {i for i, t in enumerate(unet_cfg["up_block_types"]) if t.startswith("CrossAttn")}
    state: dict[str, torch.Tensor] = {}
    if "unet" in parts:
        for k, v in load_file(folder / "unet" / "diffusion_pytorch_model.safetensors").items():
            state["model.diffusion_model." + _unet_key(k, unet_cfg["layers_per_block"], up_attn)] = v
    if "vae" in parts:
        for k, v in load_file(folder / "vae" / "diffusion_pytorch_model.safetensors").items():
            if ".mid_block.attentions." in k and v.ndim == 2:
                v = v[:, :, None, None]          # the original VAE's attention projections are 1x1 convolutions
            state["first_stage_model." + _vae_key(k, len(vae_cfg["down_block_types"]))] = v
    if "text_encoder" in parts:
        for k, v in load_file(folder / "text_encoder" / "model.safetensors").items():
            # transformers >= 5.6 saves CLIPTextModel without its ``text_model.`` level; the original files have it
            state["cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out


def build_xl_folder(root: Path) -> Path:
    """A tiny SDXL-shaped diffusers folder: two text encoders (the second with a projection, whose pooled output
    and the size / crop conditioning feed the UNet's added embedding, Podell et al. 2023 sec. 2.2)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    text_cfg = {"vocab_size": 60, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
                "num_hidden_layers": 2, "max_position_embeddings": 77, "projection_dim": 16, "bos_token_id": 0,
                "eos_token_id": 1, "pad_token_id": 1}
    time_dim = 4
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=4, attention_head_dim=2, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=16 + 6 * time_dim)   # pooled text (16) + 6 size / crop numbers
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
        sample_size=64, force_upcast=False)
    folder = root / "tiny-sdxl"
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(**text_cfg)).save_pretrained(folder / "text_encoder")
    CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg)).save_pretrained(folder / "text_encoder_2")
    EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                           steps_offset=1).save_pretrained(folder / "scheduler")
    write_tokenizer(folder / "tokenizer")
    write_tokenizer(folder / "tokenizer_2")
    index = {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1",
             "force_zeros_for_empty_prompt": True, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return folder
