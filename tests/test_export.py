"""ONNX export: the exported generator matches PyTorch in ONNX Runtime at any batch size."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from atelier.cli import cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def test_cli_export_parity_and_dynamic_batch(tiny_run, tmp_path):
    import atelier
    from atelier.export import max_abs_diff, onnx_session

    res = CliRunner().invoke(cli, ["export", str(tiny_run), "--out", str(tmp_path / "g.onnx")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    diff = float(res.output.split("max abs difference ")[1].split()[0])
    assert diff <= 1e-4
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically
    model = onnx.load(str(tmp_path / "g.onnx"))
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    assert inp.name == "z" and inp.type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    g = atelier.load(tiny_run)
    session = onnx_session(tmp_path / "g.onnx")
    for n in (1, 16):
        z = g.latents(seeds=range(n))
        assert max_abs_diff(g.network, session, {"z": z}) <= 1e-4
        out = session.run(None, {"z": z.numpy()})[0]
        assert out.shape == (n, 1, 28, 28)
    # The same seed gives the same picture through either runtime, to the uint8 level.
    img = ((torch.from_numpy(out).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert (img.int() - g.sample(seeds=range(16)).int()).abs().max() <= 1


def test_conditional_generator_exports_with_a_label_input(tiny_cgan_run, tmp_path):
    from atelier.api import export

    result = export(tiny_cgan_run, out=tmp_path / "c.onnx")
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert set(result.inputs) == {"z", "y"}
    model = onnx.load(str(tmp_path / "c.onnx"))
    assert [i.name for i in model.graph.input] == ["z", "y"]


def test_cli_export_errors(tiny_run, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(tmp_path), "--out", str(tmp_path / "x.onnx")])
    assert res.exit_code == 2 and "not an atelier run folder" in res.output
    res = runner.invoke(cli, ["export", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "run folder not found" in res.output
    res = runner.invoke(cli, ["export", str(tiny_run), "--format", "tflite"])
    assert res.exit_code == 2 and "tflite" in res.output


@pytest.mark.parametrize("kind,sizes", [("style", [(64, 48), (120, 200)]), ("pix2pix", [(32, 32), (64, 96)])])
def test_image_networks_export_with_dynamic_height_and_width(tmp_path, kind, sizes):
    """The fast style network and the pix2pix U-Net are fully convolutional: their ONNX models take other sizes
    than the one they were exported at, and say which."""
    import shutil
    from pathlib import Path

    import atelier
    from atelier.export import max_abs_diff, onnx_session

    run = tmp_path / kind
    shutil.copytree(Path(__file__).parent / "fixtures" / "legacy-runs" / kind, run)
    res = CliRunner().invoke(cli, ["export", str(run), "--out", str(tmp_path / "m.onnx")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "height, width" in res.output and "accepts:  any height and width that are multiples of" in res.output
    model = onnx.load(str(tmp_path / "m.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param  # symbolic height and width
    net = atelier.load(run).network
    session = onnx_session(tmp_path / "m.onnx")
    for h, w in sizes:
        x = torch.rand(2, 3, h, w) * (2 if kind == "pix2pix" else 1) - (1 if kind == "pix2pix" else 0)
        assert max_abs_diff(net, session, {"x": x}) <= 1e-4
