"""Foundation models in the studio: a user's own Stable Diffusion-family checkpoints (``atelier serve
--foundation PATH``), listed at ``GET /api/foundation`` and drawn with ``POST /api/t2i`` (prompt, negative prompt,
steps, guidance, sampler, seed, size). Every image carries the same provenance as ``atelier t2i`` writes; kept in
the gallery, its record holds the request that remakes it (``settings.endpoint`` + ``settings.body``).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from atelier.api.foundation import t2i
from atelier.api.gallery import created_now
from atelier.errors import AtelierError
from atelier.foundation import SAMPLERS, FoundationModel, ModelInfo, Settings, detect, load_foundation
from atelier.imageio import encode_image
from atelier.images import make_grid
from atelier.serve.context import Studio, user

__all__ = ["FoundationModels", "T2IRequest", "add_foundation_routes"]

Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]


class FoundationModels:
    """The checkpoints a studio serves, found at start-up (so a wrong path fails then) and loaded on first use."""

    def __init__(self, paths: Sequence[str | Path] = (), config: str | Path | None = None,
                 device: str = "cpu") -> None:
        self.device, self.config = device, config
        self.infos: dict[str, ModelInfo] = {}
        for path in paths:
            info = detect(path)
            name, k = info.name, 2
            while name in self.infos:
                name, k = f"{info.name}-{k}", k + 1
            self.infos[name] = info
        self._loaded: dict[str, FoundationModel] = {}
        self._locks = {name: threading.Lock() for name in self.infos}   # one load and one image at a time

    def names(self) -> list[str]:
        return list(self.infos)

    def lock(self, name: str) -> threading.Lock:
        return self._locks[name]

    def get(self, name: str) -> FoundationModel:
        if name not in self.infos:
            shown = ", ".join(self.infos) or "none (start the studio with --foundation PATH)"
            raise HTTPException(404, f"no foundation model named {name!r:.80}; available: {shown}")
        with self._locks[name]:
            if name not in self._loaded:
                info = self.infos[name]
                self._loaded[name] = load_foundation(info.path, device=self.device,
                                                     config=self.config if info.layout == "single-file" else None)
            return self._loaded[name]

    def info(self, name: str) -> dict[str, Any]:
        base = self.infos[name]
        out: dict[str, Any] = {"name": name, "kind": "foundation", "family": base.label, "layout": base.layout,
                               "capabilities": ["t2i"], "samplers": ["default", *SAMPLERS]}
        try:
            m = self.get(name)
        except AtelierError as exc:   # listed with why, not a failed listing
            return {**out, "capabilities": [], "error": str(exc)}
        return {**out, "default_size": list(m.default_size), "size_multiple": m.multiple,
                "default_sampler": m.default_sampler, "weights_sha256": m.sha256, "dtype": m.dtype,
                "device": m.device.type}


class T2IRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=200, description="A name from GET /api/foundation.")
    prompt: str = Field(min_length=1, max_length=2000)
    negative: str = Field("", max_length=2000, description="Negative prompt: what to steer away from.")
    steps: int = Field(25, ge=1, le=200)
    guidance: float = Field(6.0, ge=0.0, le=50.0, description="Classifier-free guidance scale (1 = off).")
    sampler: Literal["default", "ddim", "dpm++", "euler", "euler-a", "ddpm"] = "default"
    seed: Seed = 0
    n: int = Field(1, ge=1, le=64, description="Images, seeds seed..seed+n-1.")
    width: int | None = Field(None, ge=8, le=4096, description="Default: the model's native size.")
    height: int | None = Field(None, ge=8, le=4096)
    format: Literal["png", "json"] = Field("png", description="png: one PNG (a grid for several); json: one "
                                                              "base64 PNG per image.")
    save: bool = Field(False, description="Keep every image in the gallery with the request that remakes it.")


def add_foundation_routes(app: FastAPI, s: Studio, models: FoundationModels) -> None:
    limits, gate = s.limits, s.gate

    @app.get("/api/foundation")
    def foundation() -> dict[str, Any]:
        """The foundation models this studio serves, with the controls' defaults and ranges."""
        return {"models": [models.info(n) for n in models.names()]}

    @app.post("/api/t2i", responses={200: {"content": {"image/png": {}}}})
    def text_to_image(req: T2IRequest, request: Request) -> Response:
        """Text to image with a foundation model; every image carries its prompt, settings and the checkpoint's
        sha256 in its metadata, and atelier's watermark."""
        if req.n > limits.max_batch:
            raise HTTPException(400, f"{req.n} images asked for; this server allows at most {limits.max_batch}")
        m = models.get(req.model)
        size = None
        if req.width is not None or req.height is not None:
            size = (req.width or m.default_size[0], req.height or m.default_size[1])
        w, h = size or m.default_size
        if req.n * w * h > limits.max_output_pixels:
            raise HTTPException(400, f"{req.n} images of {w}x{h} are over this server's {limits.max_output_pixels:,} "
                                     "pixels per request")
        settings = Settings(prompt=req.prompt, negative=req.negative, steps=req.steps, guidance=req.guidance,
                            seed=req.seed, size=size, sampler=req.sampler, n=req.n)
        def draw() -> Any:
            with models.lock(req.model):   # one image at a time per model: diffusers pipelines hold state
                return t2i(m, settings)

        result = gate.run(draw)
        created = created_now()
        pngs, ids = [], []
        records = []
        for i, (img, fields) in enumerate(zip(result.images, result.fields, strict=True)):
            meta = {**fields, "workflow": "studio-t2i", "created": created}
            png = encode_image(img, "png", meta)
            pngs.append(png)
            body = {**req.model_dump(exclude={"format", "save"}), "seed": req.seed + i, "n": 1}
            records.append((png, {"model": req.model, "kind": "foundation", "workflow": "studio-t2i",
                                  "settings": {"endpoint": "/api/t2i", "body": body, "index": 0},
                                  "provenance": meta, "seed": req.seed + i, "weights_sha256": m.sha256,
                                  "user": user(request)}))
        if req.save:
            ids = [r["id"] for r in s.gallery.add_many(records)]
        if req.format == "json":
            out = [{"seed": req.seed + i, "image": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                    **({"gallery_id": ids[i]} if ids else {})} for i, png in enumerate(pngs)]
            return JSONResponse({"model": req.model, "workflow": "studio-t2i", "images": out})
        headers = {"X-Atelier-Seed": ",".join(str(req.seed + i) for i in range(req.n))}
        if ids:
            headers["X-Atelier-Gallery-Ids"] = ",".join(map(str, ids))
        if req.n == 1:
            return Response(pngs[0], media_type="image/png", headers=headers)
        meta = {**result.fields[0], "workflow": "studio-t2i", "seed": f"{req.seed}-{req.seed + req.n - 1}",
                "n": req.n}
        grid = make_grid(np.stack(result.images))
        return Response(encode_image(grid, "png", meta), media_type="image/png", headers=headers)
