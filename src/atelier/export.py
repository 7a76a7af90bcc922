"""ONNX: export a network (dynamic batch axis, and dynamic height and width where the network allows) and
check it against PyTorch in ONNX Runtime; the ONNX Runtime session the studio's backend uses.

Every loaded model names its network and example inputs (:meth:`atelier.loaded.LoadedModel.export_spec`), so
one exporter covers generators, the fast style network and the pix2pix generator (the workflow is
:func:`atelier.api.export`). The graph comes from ``torch.export`` (the ``dynamo=True`` exporter of
PyTorch >= 2.5; the TorchScript one is deprecated) with the batch dimension left symbolic, so one file serves
a single image or a 64-image grid; image inputs of fully convolutional networks keep height and width
symbolic too (a multiple of the network's stride).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atelier.utils import require_extra

__all__ = ["ExportResult", "export_module", "max_abs_diff", "onnx_session", "parity_inputs"]
OPSET = 18
OUTPUT_NAME = "image"
# Parity bound for fp32 (the acceptance bound); the DCGAN measures ~2e-6.
PARITY_TOL = 1e-4


@dataclass
class ExportResult:
    path: Path
    inputs: dict[str, list[int | str]]
    max_abs_diff: float | None
    seconds: float
    sizes: str = ""  # which image sizes the model accepts, in words

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def export_module(module: torch.nn.Module, example: dict[str, torch.Tensor], out: str | Path,
                  opset: int = OPSET, spatial: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write ``module(*example.values())`` as ONNX to ``out``, with the batch axis of every input dynamic, and the
    height and width of the inputs in ``spatial`` too: ``{"x": (stride, smallest multiple)}``.

    ``torch.export`` specialises a size that reaches 1 inside the network (a U-Net's 1x1 bottleneck at its
    training size) and then refuses a dynamic height and width; such networks are traced by PyTorch's
    TorchScript exporter instead, whose ``dynamic_axes`` keep every size symbolic. Callers check parity at two
    sizes either way (:func:`parity_inputs`).
    """
    require_extra("onnx", "export", "ONNX export")
    require_extra("onnxscript", "export", "ONNX export")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    module = module.eval()
    tmp = out.with_name(f".{out.name}.tmp")
    # The exporter logs that torchvision's detection ops are unavailable; atelier never uses them.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        stack.callback(registration.setLevel, level)
        # torch.export's own deprecation notices (pytree internals) are not actionable for users.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # Several inputs (z and a conditional model's labels) share the one batch axis, as intended.
        warnings.filterwarnings("ignore", message=r".*shares the same shape constraints", category=UserWarning)
        try:
            torch.onnx.export(module, tuple(example.values()), str(tmp), input_names=list(example),
                              output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True, external_data=False,
                              dynamic_shapes=_dynamic_shapes(example, batch, spatial or {}), verbose=False)
        except Exception:  # torch.export's guards: see the docstring
            if not spatial:
                raise
            axes = {k: {0: "batch", **({2: f"{k}_h", 3: f"{k}_w"} if k in spatial else {})} for k in example}
            axes[OUTPUT_NAME] = {0: "batch", 2: "height", 3: "width"}
            # The tracer warns about the network's own shape checks (constants in the trace) and that it is
            # deprecated; the parity check at two sizes is what says the file is right.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(example.values()), str(tmp), input_names=list(example),
                              output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False, dynamic_axes=axes)
    tmp.replace(out)  # atomic: a half-written model file is never left under the real name
    return out


def _dynamic_shapes(example: dict[str, torch.Tensor], batch: Any,
                    spatial: dict[str, tuple[int, int]]) -> dict[str, Any]:
    shapes: dict[str, Any] = {}
    for name in example:
        shapes[name] = {0: batch}
        if name in spatial:
            stride, least = spatial[name]
            # Height and width as multiples of the stride (a U-Net's 2**depth; a style network's total stride).
            h = torch.export.Dim(f"{name}_h", min=least, max=1024)
            w = torch.export.Dim(f"{name}_w", min=least, max=1024)
            shapes[name].update({2: h * stride, 3: w * stride} if stride > 1 else {2: h, 3: w})
    return shapes


def onnx_session(module_or_path: torch.nn.Module | str | Path, example: dict[str, torch.Tensor] | None = None,
                 threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for a saved model, or for ``module`` exported on the fly."""
    ort = require_extra("onnxruntime", "export", "the ONNX Runtime backend")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # Spinning worker threads help an idle machine and hurt a busy one (measured: 2x slower at batch 16
    # on a loaded 2-core CPU); a server shares its CPU with everything else.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    if isinstance(module_or_path, torch.nn.Module):
        if example is None:
            raise ValueError("exporting a module needs example inputs")
        with tempfile.TemporaryDirectory(prefix="atelier-onnx-") as tmp:
            path = export_module(module_or_path, example, Path(tmp) / "model.onnx")
            return ort.InferenceSession(path.read_bytes(), opts, providers=["CPUExecutionProvider"])
    return ort.InferenceSession(str(module_or_path), opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def max_abs_diff(module: torch.nn.Module, session: Any, inputs: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between PyTorch's and ONNX Runtime's outputs on ``inputs``."""
    ref = module.eval()(*inputs.values()).float().cpu().numpy()
    got = session.run(None, {k: v.cpu().numpy() for k, v in inputs.items()})[0]
    if got.shape != ref.shape:
        return float("inf")
    return float(np.abs(got - ref).max())


def parity_inputs(example: dict[str, torch.Tensor], batch: int = 5, seed: int = 0,
                  scale: int = 1) -> dict[str, torch.Tensor]:
    """Inputs for a parity check: a batch size other than the example's (proving the batch axis is dynamic), and
    image inputs ``scale`` times the example's height and width (proving those are, where they should be)."""
    # Integer inputs are class labels: draw them in [0, max(example) + 1) (examples hold the largest class).
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in example.items():
        shape = (batch, *v.shape[1:])
        if v.ndim == 4 and scale != 1:
            shape = (batch, v.shape[1], v.shape[2] * scale, v.shape[3] * scale)
        out[k] = (torch.randint(0, int(v.max()) + 1, shape, generator=gen) if not v.is_floating_point()
                  else torch.randn(shape, generator=gen).to(v.dtype))
    return out
