"""The StyleGAN2-type family: modulated conv maths, truncation, style mixing, the lazy regularisers against
autograd references, conditioning, RGBA, save/load, ONNX export and a few training steps through atelier."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import atelier
from atelier.checkpoint import CheckpointManager
from atelier.losses import path_length_penalty, r1_penalty
from atelier.models import build, load_pretrained, save_pretrained
from atelier.models.stylegan2 import (
    StyleConv,
    StyleGAN2Config,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    cond_blend,
    demodulation,
    minibatch_std,
    mix_styles,
    random_mix,
    set_cond_blend,
)
from atelier.runs import Run
from atelier.tasks.common import EMAGeneratorViews

TINY_MODEL = {"name": "stylegan2", "z_dim": 8, "w_dim": 8, "mapping_layers": 2, "width": 4, "width_max": 8}


def tiny_cfg(**kw) -> StyleGAN2Config:
    return StyleGAN2Config(**{k: v for k, v in TINY_MODEL.items() if k != "name"}, **kw)


def tiny_g(resolution: int = 32, channels: int = 3, **kw) -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(tiny_cfg(**kw), resolution=resolution, channels=channels)


def tiny_d(resolution: int = 32, channels: int = 3, **kw) -> StyleGAN2Discriminator:
    torch.manual_seed(1)
    return StyleGAN2Discriminator(tiny_cfg(**kw), resolution=resolution, channels=channels)


def grouped_reference(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                      up: str | None = None) -> torch.Tensor:
    """The paper's formulation: every sample convolved with its own modulated (and demodulated) weight.
    ``up="transpose"``: a 4x4 stride-2 transposed conv, whose output pixels each see a quarter of the taps
    (hence the factor 2); ``up="bilinear"``: a bilinear 2x resize first."""
    B, C, H, W = x.shape
    w = weight[None] * styles[:, None, :, None, None]                       # (B, O, C, k, k)
    if demodulate:
        w = w / (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).sqrt() * (2 if up == "transpose" else 1)
    if up == "transpose":
        out = F.conv_transpose2d(x.reshape(1, B * C, H, W), w.transpose(1, 2).reshape(B * C, -1, *w.shape[3:]),
                                 stride=2, padding=1, groups=B)
        return out.reshape(B, -1, 2 * H, 2 * W)
    if up == "bilinear":
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        B, C, H, W = x.shape
    out = F.conv2d(x.reshape(1, B * C, H, W), w.reshape(-1, C, *w.shape[3:]), padding=weight.shape[-1] // 2,
                   groups=B)
    return out.reshape(B, -1, H, W)


# ---------------------------------------------------------------- modulated convolution
def test_demodulation_is_the_norm_of_each_per_sample_modulated_kernel():
    torch.manual_seed(0)
    weight, styles = torch.randn(7, 6, 3, 3), torch.randn(5, 6)
    per_sample = weight[None] * styles[:, None, :, None, None]             # (B, O, I, k, k)
    expected = per_sample.square().sum(dim=(2, 3, 4)).rsqrt()
    torch.testing.assert_close(demodulation(weight, styles), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("up", [None, "transpose", "bilinear"])
def test_style_conv_layer_matches_the_reference_and_channels_last(up):
    torch.manual_seed(0)
    conv = StyleConv(6, 5, 8, 16 if up else 8, up=up)
    with torch.no_grad():
        conv.noise_strength.fill_(0.3)
        conv.bias.normal_()
    x, w = torch.randn(3, 6, 8, 8), torch.randn(3, 8)
    carry = torch.rand(3, 6) + 0.5                     # the input arrives as x * carry (a deferred scale)
    out, scale = conv(x, carry, w, "const")
    ref = grouped_reference(x * carry[:, :, None, None], conv.weight * conv.w_gain, conv.affine(w), True, up)
    ref = F.leaky_relu(ref + 0.3 * conv.noise_const + conv.bias[:, None, None], 0.2) * math.sqrt(2)
    torch.testing.assert_close(out * scale[:, :, None, None], ref, rtol=1e-5, atol=1e-5)
    conv.to(memory_format=torch.channels_last)
    out_cl, scale_cl = conv(x.contiguous(memory_format=torch.channels_last), carry, w, "const")
    assert out_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_cl * scale_cl[:, :, None, None], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("up", [None, "transpose", "bilinear"])
def test_demodulated_layers_keep_unit_variance_for_unit_inputs(up):
    torch.manual_seed(0)
    conv = StyleConv(64, 64, 8, 32 if up else 16, up=up)
    with torch.no_grad():
        conv.weight.mul_(7.0)                                       # wild weight scales...
        conv.affine.bias.uniform_(0.1, 4.0)                         # ...and styles: demodulation undoes both
    out, scale = conv(torch.randn(8, 64, 16, 16), torch.ones(8, 64), torch.randn(8, 8), "none")
    # lrelu(u) * sqrt(2) with u ~ N(0, 1) has second moment 1 + 0.2^2. A bilinear 2x resize of white noise
    # keeps (0.75^2 + 0.25^2)^2 of its variance (demodulation assumes unit-variance inputs, as in the paper).
    moment = (out * scale[:, :, None, None]).square().mean().item()
    assert moment == pytest.approx(1.04 * (0.625**2 if up == "bilinear" else 1.0), rel=0.1)


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_synthesis_equals_a_textbook_per_sample_modulation_network(upsample):
    # The deferred scales (demodulation and gains) leave the function unchanged: rebuild G the paper's way.
    G = tiny_g(resolution=28, channels=1, upsample=upsample).eval()
    with torch.no_grad():
        for conv in G.convs:
            conv.noise_strength.fill_(0.2)
            conv.bias.normal_()
    ws = G.mapping(torch.randn(3, 8)) + torch.randn(3, G.num_ws, 8) * 0.5   # different w per layer

    def layer(conv, h, w):
        h = grouped_reference(h, conv.weight / math.sqrt(conv.weight[0].numel()), conv.affine(w), True, conv.up)
        return F.leaky_relu(h + conv.noise_strength * conv.noise_const + conv.bias[:, None, None], 0.2) * math.sqrt(2)

    def to_rgb(rgb, h, w):
        return grouped_reference(h, rgb.weight / math.sqrt(rgb.weight.shape[1]), rgb.affine(w), False) \
            + rgb.bias[:, None, None]

    h = layer(G.convs[0], G.const.expand(3, -1, -1, -1), ws[:, 0])
    img = to_rgb(G.torgbs[0], h, ws[:, 1])
    for i in range(1, len(G.torgbs)):
        h = layer(G.convs[2 * i], layer(G.convs[2 * i - 1], h, ws[:, 2 * i - 1]), ws[:, 2 * i])
        img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(G.torgbs[i], h,
                                                                                               ws[:, 2 * i + 1])
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), img, rtol=1e-4, atol=1e-5)


def test_discriminator_equals_its_unfolded_maths():
    # The activation gains and the residual 1/sqrt(2) live in the weights; recompute D the textbook way.
    D = tiny_d(resolution=28, channels=1)
    x = torch.randn(4, 1, 28, 28)

    def conv(layer, h, act=True):
        if layer.down:
            h = F.avg_pool2d(h, 2)
        k = layer.weight.shape[-1]
        out = F.conv2d(h, layer.weight / math.sqrt(layer.weight[0].numel()), layer.bias, padding=k // 2)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if act else out

    h = conv(D.from_rgb, x)
    for block in D.blocks:
        h = (conv(block.skip, h, act=False) + conv(block.conv1, conv(block.conv0, h))) / math.sqrt(2)
    h = conv(D.conv, minibatch_std(h, 4)).flatten(1)
    h = F.leaky_relu(F.linear(h, D.fc.weight / math.sqrt(h.shape[1]), D.fc.bias), 0.2) * math.sqrt(2)
    ref = F.linear(h, D.out.weight / math.sqrt(h.shape[1]), D.out.bias)
    torch.testing.assert_close(D(x), ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- mapping, truncation, mixing
def test_truncation_psi_zero_returns_the_w_average_image_for_any_z():
    G = tiny_g().eval()
    with torch.no_grad():
        G.w_avg.normal_()   # as if trained: a non-trivial average
        a, b = G(torch.randn(3, 8), psi=0.0), G(torch.randn(3, 8) * 3, psi=0.0)
        avg_image = G.synthesis(G.w_avg.expand(3, G.num_ws, -1)).clamp(-1, 1)
        free = G(torch.randn(3, 8))
    torch.testing.assert_close(a, avg_image, rtol=0, atol=1e-6)
    torch.testing.assert_close(b, avg_image, rtol=0, atol=1e-6)
    assert (free - avg_image).abs().max() > 1e-3
    with torch.no_grad():  # psi = 0.5 with a cutoff: the first two layers halfway to the average, the rest free
        z = torch.randn(2, 8)
        ws, cut = G.mapping(z), G.mapping(z, psi=0.5, cutoff=2)
    torch.testing.assert_close(cut[:, :2], 0.5 * (ws[:, :2] + G.w_avg))
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:])


def test_w_average_is_tracked_in_training_only():
    G = tiny_g(mixing_prob=0.0)
    z = torch.randn(16, 8)
    with torch.no_grad():
        w_mean = G.map(z, None).mean(0)
        G.eval()(z)
        assert torch.equal(G.w_avg, torch.zeros(8))
        G.train()(z)
    torch.testing.assert_close(G.w_avg, (1 - G.w_avg_beta) * w_mean)


def test_style_mixing_uses_both_latents_and_the_crossover_splits_coarse_from_fine():
    G = tiny_g().eval()
    z = torch.randn(4, 8)
    with torch.no_grad():
        wa, wb, wa2, wb2 = (G.mapping(z[i:i + 1]) for i in range(4))
        k = G.ws_index(16)                  # coarse = 4 and 8 px
        assert k == 3
        mixed = mix_styles(wa, wb, k)
        assert torch.equal(mixed[:, :k], wa[:, :k]) and torch.equal(mixed[:, k:], wb[:, k:])
        img = G.synthesis(mixed)
        assert (G.synthesis(mix_styles(wa2, wb, k)) - img).abs().max() > 1e-3   # coarse latent matters
        assert (G.synthesis(mix_styles(wa, wb2, k)) - img).abs().max() > 1e-3   # fine latent matters


def test_mixing_regularisation_takes_a_suffix_of_layers_from_the_second_latent():
    torch.manual_seed(0)
    ws, ws2 = torch.zeros(200, 8, 3), torch.ones(200, 8, 3)
    mixed = random_mix(ws, ws2, prob=0.9)
    from_second = mixed[:, :, 0]                                               # (B, L): 1 where taken from ws2
    assert torch.equal(from_second, from_second.cummax(dim=1).values)         # once switched, stays switched
    assert from_second[:, 0].sum() == 0                                        # layer 0 always from the first
    share = (from_second[:, -1] == 1).float().mean().item()
    assert 0.8 < share < 0.97                                                  # about prob of the samples mix
    assert torch.equal(random_mix(ws, ws2, prob=0.0), ws)
    G = tiny_g(mixing_prob=1.0).train()                                        # in G: two mapping calls' worth
    torch.manual_seed(3)
    a = G(torch.zeros(2, 8) + 1, noise_mode="const")
    torch.manual_seed(4)
    b = G(torch.zeros(2, 8) + 1, noise_mode="const")
    assert (a - b).abs().max() > 1e-4                                          # the second latent is random


def test_class_conditional_mapping_gives_different_w_per_class():
    G = tiny_g(num_classes=5).eval()
    z = torch.randn(1, 8).expand(5, -1)
    with torch.no_grad():
        ws = G.mapping(z, torch.arange(5))[:, 0]                               # (5, w_dim)
    assert torch.cdist(ws, ws)[~torch.eye(5, dtype=torch.bool)].min() > 1e-3
    with pytest.raises(ValueError, match="class-conditional"):
        G(torch.randn(2, 8))
    D = tiny_d(num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    assert D(x, torch.tensor([0, 1])).shape == (2, 1)
    assert not torch.equal(D(x, torch.tensor([0, 0])), D(x, torch.tensor([3, 3])))


def test_transitional_conditioning_starts_unconditional_and_blends_the_classes_in():
    cfg = tiny_cfg(num_classes=5, cond_start_kimg=1, cond_ramp_kimg=2)
    assert [cond_blend(cfg, n) for n in (0, 999, 1000, 2000, 3000, 9000)] == [0, 0, 0, 0.5, 1, 1]
    assert [cond_blend(tiny_cfg(num_classes=5, cond_start_kimg=1), n) for n in (999, 1000)] == [0, 1]
    G, D = tiny_g(num_classes=5, cond_ramp_kimg=2).eval(), tiny_d(num_classes=5, cond_ramp_kimg=2)
    z, x, y = torch.randn(1, 8).expand(5, -1), torch.randn(1, 3, 32, 32).expand(5, -1, -1, -1), torch.arange(5)
    with torch.no_grad():
        set_cond_blend(G, 0.0)
        set_cond_blend(D, 0.0)
        ws, logits = G.mapping(z, y)[:, 0], D(x, y)
        assert torch.equal(ws, ws[:1].expand(5, -1)) and torch.equal(logits, logits[:1].expand(5, -1))  # no class
        set_cond_blend(G, 1.0)
        set_cond_blend(D, 1.0)
        ws, logits = G.mapping(z, y)[:, 0], D(x, y)
    assert torch.cdist(ws, ws)[~torch.eye(5, dtype=torch.bool)].min() > 1e-3 and logits.unique().numel() == 5
    assert "map.cond_weight" in G.state_dict() and "uncond.weight" in D.state_dict()
    # Without the schedule, a conditional model keeps the weights it always had: older runs still load.
    assert not {"map.cond_weight", "cond_weight", "uncond.weight"} & {*tiny_g(num_classes=5).state_dict(),
                                                                     *tiny_d(num_classes=5).state_dict()}


def test_fake_labels_follow_the_training_class_mix():
    views = EMAGeneratorViews()
    views.num_classes, views.z_dim = 3, 2
    views.dataset = types.SimpleNamespace(labels=torch.tensor([0] * 80 + [1] * 15 + [2] * 5))
    views.ctx = types.SimpleNamespace(device=torch.device("cpu"))
    torch.manual_seed(0)
    z, y = views.noise(20_000)
    assert z.shape == (20_000, 2)
    shares = torch.bincount(y, minlength=3) / 20_000
    torch.testing.assert_close(shares, torch.tensor([0.80, 0.15, 0.05]), atol=0.015, rtol=0)


# ---------------------------------------------------------------- discriminator and regularisers
def test_minibatch_std_groups_consecutive_samples():
    x = torch.cat([torch.zeros(4, 2, 2, 2), torch.randn(4, 2, 2, 2)])          # reals then fakes
    out = minibatch_std(x, group_size=4)
    assert out.shape == (8, 3, 2, 2)
    assert out[:4, 2].max() < 1e-3 and out[4:, 2].min() > 0.1                 # no group mixes the two halves
    assert minibatch_std(torch.randn(6, 2, 2, 2), 4).shape == (6, 3, 2, 2)    # 6 = groups of 3


def test_r1_matches_an_autograd_reference_and_its_gradient_checks():
    D = tiny_d(resolution=28, channels=1)
    x = torch.randn(4, 1, 28, 28)
    grad = torch.autograd.functional.jacobian(lambda v: D(v).sum(), x)        # (4, 1, 28, 28)
    reference = grad.flatten(1).square().sum(1).mean()
    torch.testing.assert_close(r1_penalty(D, x), reference, rtol=1e-5, atol=0)
    # The penalty's own gradient (double backward through every layer, mbstd included) against finite differences.
    D = D.double()
    small = torch.randn(4, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: D(v), (small,), eps=1e-6, atol=1e-4, fast_mode=True)


def test_path_length_penalty_matches_a_jacobian_reference():
    G = tiny_g(resolution=28, channels=1).double().eval()
    z = torch.randn(6, 8, dtype=torch.float64)
    pl_mean = torch.tensor(0.5, dtype=torch.float64)
    torch.manual_seed(7)
    penalty, new_mean = path_length_penalty(G, z, None, pl_mean, decay=0.1, noise_mode="const")
    torch.manual_seed(7)
    u = torch.randn(3, 1, 28, 28, dtype=torch.float64) / 28                  # the same direction draw
    lengths = []
    for i in range(3):
        ws = G.mapping(z[i:i + 1]).detach()
        J = torch.autograd.functional.jacobian(lambda w: G.synthesis(w, noise_mode="const"), ws,
                                               vectorize=True)  # (1, C, H, W, 1, L, K)
        jt_u = (J[0] * u[i][:, :, :, None, None, None]).sum(dim=(0, 1, 2))[0]  # (L, w_dim)
        lengths.append(jt_u.square().sum(1).mean().sqrt())
    lengths_t = torch.stack(lengths)
    expected_mean = 0.5 + 0.1 * (lengths_t.mean() - 0.5)
    torch.testing.assert_close(new_mean, expected_mean)
    torch.testing.assert_close(penalty, (lengths_t - expected_mean).square().mean())
    penalty.backward()
    assert G.convs[0].weight.grad.abs().sum() > 0 and G.map.net[0].weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- building, saving, exporting
@pytest.mark.parametrize("resolution,channels", [(28, 1), (32, 3), (64, 4), (128, 3)])
def test_shapes_for_every_resolution_and_rgba(resolution, channels):
    torch.manual_seed(0)
    nets = build({**TINY_MODEL, "width": 2, "width_max": 4}, resolution, channels)
    x = nets["G"].eval()(torch.randn(2, 8))
    assert x.shape == (2, channels, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    assert nets["D"](x).shape == (2, 1)


def test_bad_resolution_and_inputs_are_clear():
    with pytest.raises(ValueError, match=r"stylegan2 supports s \* 2\^k"):
        tiny_g(resolution=48 * 3)
    with pytest.raises(ValueError, match=r"expected z of shape \(B, 8\)"):
        tiny_g()(torch.randn(2, 5))
    with pytest.raises(ValueError, match="channels must be 1, 3 or 4"):
        tiny_g(channels=2)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    G, D = tiny_g(num_classes=3).eval(), tiny_d(num_classes=3)
    with torch.no_grad():
        G.w_avg.normal_()
    save_pretrained(G, tmp_path / "g")
    save_pretrained(D, tmp_path / "d")
    G2, D2 = load_pretrained(tmp_path / "g").eval(), load_pretrained(tmp_path / "d")
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    assert torch.equal(G(z, y, psi=0.7), G2(z, y, psi=0.7))
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(D(x, y), D2(x, y))


def test_generator_exports_to_onnx_and_matches_in_onnx_runtime():
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from atelier.export import max_abs_diff, onnx_session

    G = tiny_g(num_classes=3).eval()
    example = {"z": torch.randn(2, 8), "y": torch.tensor([0, 2])}
    session = onnx_session(G, example)
    inputs = {"z": torch.randn(5, 8), "y": torch.tensor([0, 1, 2, 1, 0])}
    assert max_abs_diff(G, session, inputs) <= 1e-4


def test_bf16_autocast_and_channels_last_stay_close_to_fp32():
    G, D = tiny_g(), tiny_d()
    z = torch.randn(4, 8)
    with torch.no_grad():
        ref = G.eval()(z)
        G.to(memory_format=torch.channels_last)
        torch.testing.assert_close(G(z), ref, rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, logits = G(z), D(G(z))
    assert (low.float() - ref).abs().max() < 0.1 and torch.isfinite(logits.float()).all()


# ---------------------------------------------------------------- training through atelier
def test_a_few_training_steps_through_the_trainer(tmp_path, tiny):
    overrides = {**tiny, **{f"model.{k}": v for k, v in TINY_MODEL.items()}, "data.resolution": 32,
                 "loss.r1_gamma": 1.0, "loss.r1_every": 2, "optim.betas": [0.0, 0.99], "optim.lr_g": 2e-3,
                 "optim.lr_d": 2e-3, "train.steps": 4, "log.every": 1}
    result = atelier.train(None, tmp_path / "sg", overrides, progress=False)
    assert result.step == 4 and np.isfinite(result.metrics["loss_d"]) and np.isfinite(result.metrics["loss_g"])
    assert result.metrics["loss_d"] < 10
    images = atelier.load(tmp_path / "sg").sample(3, seed=0)
    assert images.shape == (3, 1, 32, 32) and images.dtype == torch.uint8


def test_training_sets_the_class_blend_from_the_images_seen(tmp_path, tiny):
    overrides = {**tiny, **{f"model.{k}": v for k, v in TINY_MODEL.items()}, "data.resolution": 32,
                 "model.num_classes": 10, "model.cond_start_kimg": 0.004, "model.cond_ramp_kimg": 0.016,
                 "train.batch_size": 4, "train.steps": 4}
    atelier.train(None, tmp_path / "tc", overrides, progress=False)
    state = CheckpointManager.read(Run(tmp_path / "tc").latest_checkpoint())
    # The 4th step counts 16 images: (16 - 4) / 16 of the way in, in G and D; the EMA generator averages its
    # blend with its weights, so it lies between this step's 0.75 and the one before's 0.5.
    assert float(state["G"]["map.cond_weight"]) == float(state["D"]["cond_weight"]) == 0.75
    assert 0.5 < float(state["G_ema"]["map.cond_weight"]) < 0.75
