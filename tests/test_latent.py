"""Latent tools: interpolation ends and norms, truncation, seeded variations, and `atelier interpolate`."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from atelier import latent
from atelier.cli import cli
from atelier.provenance import read_metadata


def _pair(d: int = 64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(d, generator=g), torch.randn(d, generator=g)


@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_interpolation_starts_and_ends_at_the_seeds(mode):
    a, b = _pair()
    z = latent.interpolate(a, b, 9, mode)
    assert z.shape == (9, 64)
    torch.testing.assert_close(z[0], a, atol=1e-5, rtol=0)
    torch.testing.assert_close(z[-1], b, atol=1e-5, rtol=0)


def test_slerp_keeps_the_norm_where_lerp_shrinks_it():
    a, b = _pair(512)
    mid_s = latent.interpolate(a, b, 3, "slerp")[1]
    mid_l = latent.interpolate(a, b, 3, "lerp")[1]
    expected = (a.norm() + b.norm()) / 2
    # Two independent Gaussian vectors are nearly orthogonal: the straight midpoint is ~1/sqrt(2) as long.
    assert abs(mid_s.norm() - expected) / expected < 1e-4
    assert mid_l.norm() < 0.8 * expected


def test_slerp_of_parallel_latents_falls_back_to_lerp():
    a = torch.ones(8)
    z = latent.interpolate(a, 2 * a, 5, "slerp")
    torch.testing.assert_close(z[2], 1.5 * a)


def test_interpolate_path_and_bad_arguments():
    z = torch.randn(3, 16)
    path = latent.interpolate_path(z, 4)
    assert path.shape == (8, 16)
    torch.testing.assert_close(path[3], z[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(path[4], z[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="frames"):
        latent.interpolate(z[0], z[1], 1)
    with pytest.raises(ValueError, match="mode"):
        latent.interpolate(z[0], z[1], 4, "cubic")  # type: ignore[arg-type]


def test_truncation_pulls_toward_the_mean():
    z = torch.randn(4, 16)
    assert latent.truncate(z, 1.0) is z
    torch.testing.assert_close(latent.truncate(z, 0.0), torch.zeros_like(z))
    torch.testing.assert_close(latent.truncate(z, 0.5), z * 0.5)
    mean = torch.full((16,), 2.0)
    torch.testing.assert_close(latent.truncate(z, 0.0, mean), mean.expand_as(z))


def test_variations_are_seeded_near_and_keep_the_norm():
    z = torch.randn(1, 100, generator=torch.Generator().manual_seed(3))
    v1 = latent.variations(z, 6, strength=0.3, seed=1)
    assert v1.shape == (6, 100)
    torch.testing.assert_close(v1, latent.variations(z, 6, strength=0.3, seed=1))
    assert not torch.allclose(v1, latent.variations(z, 6, strength=0.3, seed=2))
    torch.testing.assert_close(v1.norm(dim=1), z.norm().expand(6))
    near = torch.nn.functional.cosine_similarity(v1, z).min()
    far = torch.nn.functional.cosine_similarity(latent.variations(z, 6, strength=2.0, seed=1), z).max()
    assert near > 0.9 > far
    torch.testing.assert_close(latent.variations(z, 2, strength=0.0), z.expand(2, -1))


def test_cli_interpolate_strip_and_gif(tiny_run, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["interpolate", str(tiny_run), "--seeds", "3,17", "--frames", "6",
                              "--out", str(tmp_path / "strip.png")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "strip.png") as img:
        # One row of 6 frames of 28 px, padded by 2, enlarged 3x.
        assert img.size == ((6 * 30 + 2) * 3, 30 * 3 + 6)
    meta = read_metadata(str(tmp_path / "strip.png"))
    assert meta["atelier:workflow"] == "interpolate" and meta["atelier:seeds"] == "3,17"
    assert meta["atelier:mode"] == "slerp"

    res = runner.invoke(cli, ["interpolate", str(tiny_run), "--seeds", "1-3", "--frames", "4", "--mode", "lerp",
                              "--out", str(tmp_path / "walk.gif")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames > 1
        assert b"trainedAlgorithmicMedia" in gif.info["comment"]

    res = runner.invoke(cli, ["interpolate", str(tiny_run), "--seeds", "3", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "at least two seeds" in res.output
    res = runner.invoke(cli, ["interpolate", str(tmp_path / "nope"), "--seeds", "1,2",
                              "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and res.output.startswith("error: run folder not found")
