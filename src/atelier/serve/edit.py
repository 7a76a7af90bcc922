"""The studio's region editor: change one region of an uploaded image with a served model, keep the rest.

``POST /api/edit`` takes the image, the region (a painted brush mask, a rectangle, or classes of a served
segmenter), the edit kind (:data:`atelier.api.edit.EDITS`: restyle with a style network, translate with a
pix2pix run) and the model, and returns the edited PNG. Every pixel outside the mask is the upload's own,
bit for bit; the PNG records the edit (IPTC ``compositeWithTrainedAlgorithmicMedia``, the model and its
checkpoint, the mask's source, the input's sha256). ``GET /api/edit/kinds`` lists the kinds and the served
models each one can use, and the served segmenters with their classes.
"""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from PIL import Image

from atelier.api.edit import EDITS, edit_region, read_image
from atelier.api.gallery import created_now
from atelier.api.masks import parse_rect
from atelier.images import open_image
from atelier.loaded import Segmenter
from atelier.serve.context import Studio, user
from atelier.serve.generate import read_upload

__all__ = ["add_edit_routes"]

MAX_FEATHER = 64


def add_edit_routes(app: FastAPI, s: Studio) -> None:
    store, limits, gate = s.store, s.limits, s.gate

    def served_of_kind(kind: str) -> list[str]:
        return [name for name, (_, family) in store.runs.items() if family.kind == kind]

    @app.get("/api/edit/kinds")
    def edit_kinds() -> dict[str, Any]:
        """The region edits, the served models each can use, and the served segmenters with their classes."""
        kinds = {k: {"model_kind": cls.model_kind,
                     "models": [name for name, (_, family) in store.runs.items() if cls.accepts(family.loaded)]}
                 for k, cls in sorted(EDITS.items())}
        segmenters = {}
        for name in served_of_kind("segmenter"):
            info = store.get(name).model.info()
            segmenters[name] = {"classes": info.get("classes", []), "colors": info.get("colors", [])}
        return {"kinds": kinds, "segmenters": segmenters, "max_feather": MAX_FEATHER}

    @app.post("/api/edit", responses={200: {"content": {"image/png": {}}}})
    def edit(request: Request, file: Annotated[UploadFile, File()], kind: Annotated[str, Form(max_length=40)],
             model: Annotated[str, Form(max_length=200)], mask: Annotated[UploadFile | None, File()] = None,
             rect: Annotated[str | None, Form(max_length=80)] = None,
             segmenter: Annotated[str | None, Form(max_length=200)] = None,
             classes: Annotated[str | None, Form(max_length=400)] = None, invert: Annotated[bool, Form()] = False,
             feather: Annotated[int, Form(ge=0, le=MAX_FEATHER)] = 4,
             save: Annotated[bool, Form()] = False) -> Response:
        """Edit one region of an uploaded image: exactly one of ``mask`` (a painted PNG, white = edit, the
        image's size), ``rect`` ("x0,y0,x1,y1" in pixels) or ``segmenter`` + ``classes`` ("window,door")."""
        if kind not in EDITS:
            raise HTTPException(400, f"unknown edit {kind!r}; choose one of: {', '.join(sorted(EDITS))}")
        given = [n for n, v in (("mask", mask), ("rect", rect), ("segmenter", segmenter)) if v]
        if len(given) != 1:
            raise HTTPException(400, "give exactly one region: a painted mask, a rect or a segmenter with classes"
                                + (f" (got {' and '.join(given)})" if given else ""))
        if segmenter and not classes:
            raise HTTPException(400, "a segmenter region needs classes, e.g. window,door")
        wanted = EDITS[kind].model_kind
        if model not in served_of_kind(wanted):
            raise HTTPException(404, f"no {wanted} named {model!r} is served; a {kind} edit can use: "
                                f"{', '.join(served_of_kind(wanted)) or 'none (train one first)'}")
        data = read_upload(file, limits)
        image = read_image(_open(data, file.filename, limits.max_upload_pixels))
        region: dict[str, Any] = {}
        if mask is not None:
            brush = _open(read_upload(mask, limits), mask.filename or "the mask", limits.max_upload_pixels)
            painted = "A" in brush.getbands() or "transparency" in brush.info
            region["brush"] = brush.convert("RGBA" if painted else "L")  # painted: alpha > 0; else non-zero
        elif rect:
            region["rect"] = parse_rect(rect)
        served = store.get(model)
        seg = None
        if segmenter:
            if segmenter not in served_of_kind("segmenter"):
                raise HTTPException(404, f"no segmenter named {segmenter!r} is served")
            seg = store.get(segmenter)
            assert isinstance(seg.model, Segmenter)
            region.update(segmenter=seg.model, classes=classes)

        def run() -> Any:
            with ExitStack() as stack:  # one forward pass per model at a time (their locks, in a fixed order)
                for m in sorted({id(served): served, **({id(seg): seg} if seg else {})}.values(),
                                key=lambda m: m.name):
                    stack.enter_context(m.lock)
                return edit_region(image, kind=kind, model=served.model, invert=invert, feather_px=feather,
                                   **region)

        result = gate.run(run)
        source = (file.filename or "upload")[:200]
        result.metadata.update(source=source, workflow="studio-edit", created=created_now())
        png = result.encode("png")
        headers = {"X-Atelier-Mask-Fraction": f"{result.mask.fraction:.6f}"}
        if save:
            body = {"kind": kind, "model": model, "input": source,
                    "input_sha256": hashlib.sha256(data).hexdigest(), "feather": feather, "invert": invert,
                    **({"rect": rect} if rect else {}), **({"segmenter": segmenter, "classes": classes}
                                                          if segmenter else {})}
            rec = s.gallery.add(png, model=served.name, kind=served.kind, workflow="studio-edit",
                                provenance=result.metadata, settings={"endpoint": "/api/edit", "body": body,
                                                                      "index": 0},
                                step=served.model.step, weights_sha256=served.model.weights_sha256,
                                user=user(request))
            headers["X-Atelier-Gallery-Ids"] = str(rec["id"])
        return Response(png, media_type="image/png", headers=headers)


def _open(data: bytes, name: str | None, max_pixels: int) -> Image.Image:
    """Decode an upload with the studio's pixel limit (a clear 400 for a broken or oversized image)."""
    return open_image(data, name=name or "the upload", max_pixels=max_pixels)
