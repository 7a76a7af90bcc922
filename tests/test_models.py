from __future__ import annotations

import pytest
import torch

from atelier.models import build, load_pretrained, registered, save_pretrained
from atelier.models.dcgan import DCGANConfig, Discriminator, Generator


def _g(resolution: int = 28, channels: int = 1, **options) -> Generator:
    return Generator(DCGANConfig(**options), resolution=resolution, channels=channels)


def _d(resolution: int = 28, channels: int = 1, **options) -> Discriminator:
    return Discriminator(DCGANConfig(**options), resolution=resolution, channels=channels)


def _tf_param_count(module: torch.nn.Module) -> int:
    # Keras' summary counts BatchNorm's moving mean/variance as (non-trainable) parameters.
    buffers = sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))
    return sum(p.numel() for p in module.parameters()) + buffers


def test_registry_has_dcgan():
    assert "dcgan" in registered()


def test_architecture_matches_the_tensorflow_tutorial_exactly():
    # model.summary() of the TensorFlow DCGAN tutorial: generator 2,330,944 and discriminator 212,865
    # total parameters. A Dense(256) bug, a missing BN or a biased conv would change these counts.
    assert _tf_param_count(_g()) == 2_330_944
    assert _tf_param_count(_d()) == 212_865
    g = _g()
    assert g.fc.out_features == 7 * 7 * 256 and g.fc.bias is None
    convs = [m for m in g.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [(256, 128, 1), (128, 64, 2), (64, 1, 2)]
    assert isinstance(g.net[-1], torch.nn.Tanh)
    d = _d()
    assert [m.p for m in d.modules() if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]
    assert d.fc.out_features == 1  # a logit: no sigmoid inside


@pytest.mark.parametrize("resolution,channels", [(28, 1), (32, 3), (64, 3), (64, 1)])
def test_shapes_for_every_resolution(resolution, channels):
    nets = build({"name": "dcgan", "z_dim": 12, "width": 4, "dropout": 0.3, "negative_slope": 0.2},
                 resolution, channels)
    x = nets["G"](torch.randn(3, 12))
    assert x.shape == (3, channels, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    assert nets["D"](x).shape == (3, 1)


def test_unsupported_resolution_and_bad_latent_are_clear():
    with pytest.raises(ValueError, match="data.resolution must be one of"):
        _g(resolution=48)
    with pytest.raises(ValueError, match=r"expected z of shape \(B, 100\)"):
        _g()(torch.randn(2, 7))


def test_save_load_round_trip_without_pickle(tmp_path):
    torch.manual_seed(0)
    g = _g(width=8, z_dim=10).eval()
    save_pretrained(g, tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["config.json", "model.safetensors"]
    g2 = load_pretrained(tmp_path / "g").eval()
    z = torch.randn(4, 10)
    assert torch.equal(g(z), g2(z))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_dropout_keeps_nn_dropouts_maths(dtype):
    from atelier.models.layers import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.3)
    x = torch.ones(200_000, dtype=dtype, requires_grad=True)
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.005                                   # the drop rate is p
    assert torch.allclose(y[y != 0].float(), torch.full_like(y[y != 0].float(), 1 / 0.7), rtol=1e-2)
    y.sum().backward()
    assert torch.equal(x.grad != 0, y != 0)                             # gradient flows through kept elements only
    a, b = drop(torch.ones(64, 64)), drop(torch.ones(64, 64))
    assert not torch.equal(a, b)                                        # a fresh mask per call
    torch.manual_seed(1)
    c = drop(torch.ones(64, 64))
    torch.manual_seed(1)
    assert torch.equal(c, drop(torch.ones(64, 64)))                     # seeded by the default generator
    assert torch.equal(drop.eval()(x), x)                               # identity in eval mode


def test_fast_dropout_and_flat_linear_keep_channels_last():
    """The layout levers of the DCGAN discriminator: same maths, and nothing falls back to NCHW order."""
    from atelier.models.layers import Dropout, flat_linear

    torch.manual_seed(0)
    x = torch.randn(8, 16, 7, 7).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = Dropout(0.3)(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert abs((y == 0).float().mean().item() - 0.3) < 0.05
    sliced = (torch.rand(8, 32, 7, 7) + 1)[:, ::2]                      # a non-dense input works too
    ys = Dropout(0.3)(sliced)
    assert ys.shape == sliced.shape and abs((ys == 0).float().mean().item() - 0.3) < 0.05
    assert torch.allclose(ys[ys != 0], sliced[ys != 0] / 0.7)
    fc = torch.nn.Linear(16 * 7 * 7, 3)
    h = x.detach().clone().requires_grad_(True)
    out = flat_linear(fc, h)
    ref = fc(x.detach().contiguous().flatten(1))
    assert torch.allclose(out, ref, atol=1e-5)                          # the C, H, W column order is kept
    out.sum().backward()
    assert h.grad.is_contiguous(memory_format=torch.channels_last)     # the gradient stays channels_last
    grad_w = fc.weight.grad.clone()
    fc.weight.grad = None
    ref.sum().backward()
    assert torch.allclose(grad_w, fc.weight.grad, atol=1e-5)
    assert torch.equal(flat_linear(fc, x.detach().contiguous()), fc(x.detach().contiguous().flatten(1)))
