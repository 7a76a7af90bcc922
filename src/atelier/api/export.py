"""The *export* workflow: a run's network to ONNX, checked against PyTorch in ONNX Runtime."""

from __future__ import annotations

import time
from pathlib import Path

from atelier import families
from atelier.errors import RunError
from atelier.export import PARITY_TOL, ExportResult, export_module, max_abs_diff, onnx_session, parity_inputs

__all__ = ["FORMATS", "export"]

FORMATS = ("onnx",)


def export(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None, check: bool = True) -> ExportResult:
    """Export the network of a run folder (a generator, a translator or a stylizer) and check its parity at the
    example size and, for image inputs with a free size, at twice that size."""
    if fmt not in FORMATS:
        raise RunError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    started = time.perf_counter()
    model = families.load(run_dir)
    module, example, spatial = model.export_spec()
    out = Path(out) if out is not None else Path(run_dir) / "export" / "model.onnx"
    export_module(module, example, out, spatial=spatial)
    diff = None
    if check:
        session = onnx_session(out)
        scales = (1, 2) if spatial else (1,)
        diff = max(max_abs_diff(module, session, parity_inputs(example, scale=s)) for s in scales)
        if not diff <= PARITY_TOL:
            raise RunError(f"the ONNX model differs from PyTorch by {diff:.3g} (> {PARITY_TOL}); it was written to "
                           f"{out} but should not be trusted")
    shapes: dict[str, list[int | str]] = {
        k: (["batch", v.shape[1], "height", "width"] if k in spatial else ["batch", *v.shape[1:]])
        for k, v in example.items()}
    return ExportResult(out, shapes, diff, time.perf_counter() - started, sizes=model.export_sizes())
