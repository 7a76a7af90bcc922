"""Export trained networks to ONNX (dynamic batch axis) and check them against PyTorch in ONNX Runtime.

Every kind of model the studio serves names its network and example inputs
(:meth:`atelier.serve.registry.ServedModel.export_spec`), so one exporter covers generators, and later
the fast style network and the pix2pix generator. The graph comes from ``torch.export`` (the
``dynamo=True`` exporter of PyTorch >= 2.5; the TorchScript one is deprecated) with the batch
dimension left symbolic, so one file serves a single image or a 64-image grid.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atelier.errors import RunError
from atelier.utils import require_extra

__all__ = ["ExportResult", "export_module", "export_run", "max_abs_diff", "onnx_session"]

FORMATS = ("onnx",)
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

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def export_module(module: torch.nn.Module, example: dict[str, torch.Tensor], out: str | Path,
                  opset: int = OPSET, dynamic_shapes: dict[str, dict[int, Any]] | None = None,
                  output_name: str = OUTPUT_NAME) -> Path:
    """Write ``module(*example.values())`` as ONNX to ``out``, with the batch axis of every input dynamic.

    ``dynamic_shapes`` replaces that default with ``torch.export`` dims per input (e.g. a denoiser's
    height and width as well); ``output_name`` names the graph's output.
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
        torch.onnx.export(module, tuple(example.values()), str(tmp), input_names=list(example),
                          output_names=[output_name], opset_version=opset, dynamo=True, external_data=False,
                          dynamic_shapes=dynamic_shapes or {k: {0: batch} for k in example}, verbose=False)
    tmp.replace(out)  # atomic: a half-written model file is never left under the real name
    return out


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


def _parity_inputs(example: dict[str, torch.Tensor], batch: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    # A batch size different from the example's proves the batch axis really is dynamic.
    # Integer inputs are class labels: draw them in [0, max(example) + 1) (examples hold the largest class).
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randint(0, int(v.max()) + 1, (batch, *v.shape[1:]), generator=gen) if not v.is_floating_point()
                else torch.randn((batch, *v.shape[1:]), generator=gen).to(v.dtype)) for k, v in example.items()}


def export_run(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None, check: bool = True,
               opset: int = OPSET) -> ExportResult:
    """Export the network of a run folder (any kind the studio serves) and check its parity."""
    from atelier.serve.registry import detect_kind

    if fmt not in FORMATS:
        raise RunError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}")
    kind = detect_kind(run_dir)
    if kind is None:
        raise RunError(f"{run_dir} is not a run folder of a model atelier can export (no config.yaml of a known kind)")
    started = time.perf_counter()
    model = kind.load(run_dir.name, run_dir)
    module, example = model.export_spec()
    out = Path(out) if out is not None else run_dir / "export" / "model.onnx"
    export_module(module, example, out, opset=opset)
    diff = None
    if check:
        inputs = _parity_inputs(example)
        diff = max_abs_diff(module, onnx_session(out), inputs)
        if not diff <= PARITY_TOL:
            raise RunError(f"the ONNX model differs from PyTorch by {diff:.3g} (> {PARITY_TOL}); it was written to "
                           f"{out} but should not be trusted")
    shapes = {k: ["batch", *v.shape[1:]] for k, v in example.items()}
    return ExportResult(out, shapes, diff, time.perf_counter() - started)
