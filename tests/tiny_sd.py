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
