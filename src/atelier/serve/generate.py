"""Making images: generate from seeds, vary, interpolate, translate and stylize uploads, verify provenance.

Endpoints are plain ``def`` functions, so FastAPI runs them in its worker thread pool and a forward pass never
blocks the event loop; the :class:`~atelier.serve.gate.Gate` bounds how many run at once. Every image leaves
through :func:`atelier.imageio.encode_image`, the code ``save_image`` uses, so a downloaded image carries the
same provenance as one written by the CLI. With ``"save": true`` each image is also kept in the gallery with
the request that remakes it (the page saves everything it makes).
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from atelier import latent, provenance
from atelier.api.diffusion import with_sampling
from atelier.api.gallery import created_now
from atelier.errors import AtelierError
from atelier.imageio import encode_image
from atelier.images import IMAGE_SUFFIXES, load_image, make_grid, to_uint8_array
from atelier.loaded import Generator
from atelier.serve.context import Studio, user
from atelier.serve.gate import MAX_BATCH, MAX_FRAMES, Limits
from atelier.serve.registry import ModelStore, ServedModel

__all__ = ["GenerateRequest", "InterpolateRequest", "VariationsRequest", "add_generate_routes"]

MAX_SEED = 2**31 - 1  # fits a JavaScript integer and a URL without surprises
MAX_STEPS = 1000      # a diffusion model's full DDPM chain
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Psi = Annotated[float, Field(ge=0.0, le=2.0, description="Truncation ψ: 1 = none, toward 0 = the mean image.")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=200, description="A model name from GET /api/models.")
    truncation: Psi = 1.0
    label: int | None = Field(None, ge=0, le=100_000, description="Class index, for models with classes.")
    format: Literal["png", "json"] = Field(
        "png", description="png: one PNG (a grid when several images); json: one base64 PNG per image.")
    scale: int = Field(1, ge=1, le=16, description="Enlarge each image (nearest neighbour), e.g. for download.")
    save: bool = Field(False, description="Keep every image in the gallery (with the request that remakes it).")
    # Diffusion models only (a GAN answers 400): how to sample; unset keeps the run's own settings.
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Diffusion: denoiser steps (NFE).")
    sampler: str | None = Field(None, min_length=1, max_length=20, description="Diffusion: dpm++, ddim, ddpm, euler.")
    guidance: float | None = Field(None, ge=0.0, le=20.0, description="Diffusion: classifier-free guidance scale.")


class GenerateRequest(_Request):
    seeds: list[Seed] | None = Field(None, min_length=1, max_length=MAX_BATCH,
                                     description="One image per seed; or give n and seed.")
    n: int | None = Field(None, ge=1, le=MAX_BATCH, description="How many images, seeds seed..seed+n-1.")
    seed: Seed = 0


class VariationsRequest(_Request):
    seed: Seed = Field(description="The seed whose image is varied.")
    n: int = Field(8, ge=1, le=MAX_BATCH)
    strength: float = Field(0.3, ge=0.0, le=2.0, description="0: the seed's image; 1: about a fresh sample.")
    variation_seed: Seed = 0


class InterpolateRequest(_Request):
    seed_a: Seed
    seed_b: Seed
    frames: int = Field(8, ge=2, le=MAX_FRAMES)
    mode: Literal["slerp", "lerp"] = "slerp"


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _check_output(n: int, model: ServedModel, scale: int, limits: Limits) -> None:
    info = model.info()
    pixels = n * int(info.get("resolution") or 1) ** 2 * scale**2
    if pixels > limits.max_output_pixels:
        raise HTTPException(400, f"{n} images at scale {scale} would be {pixels:,} pixels; this server returns at most "
                                 f"{limits.max_output_pixels:,} per request (ask for fewer images or a smaller scale)")


def _label(model: ServedModel, label: int | None, n: int) -> torch.Tensor | None:
    classes = model.info().get("classes")
    if label is None:
        return None
    if not classes:
        raise HTTPException(400, f"model {model.name!r} has no classes; leave out 'label'")
    if label >= len(classes):
        raise HTTPException(400, f"label {label} is out of range: model {model.name!r} has {len(classes)} classes")
    return torch.full((n,), label, dtype=torch.long)


def served(store: ModelStore, name: str) -> ServedModel:
    try:
        return store.get(name)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None


def _generator(store: ModelStore, name: str) -> ServedModel:
    model = served(store, name)
    if "generate" not in model.capabilities:
        raise HTTPException(400, f"model {name!r} is a {model.kind} model; it does not generate from seeds")
    return model


def _check_batch(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise HTTPException(400, f"{n} {what} asked for; this server allows at most {limit} per request")


def read_upload(upload: UploadFile, limits: Limits) -> bytes:
    data = upload.file.read(limits.max_upload_bytes + 1)
    if len(data) > limits.max_upload_bytes:
        raise HTTPException(413, f"the upload is over {limits.max_upload_bytes:,} bytes")
    if not data:
        raise HTTPException(400, "the upload is empty; attach an image file")
    return data


def _verifier() -> Any:
    return getattr(provenance, "verify_image", None)  # (tests take it away to show the studio without it)


def add_generate_routes(app: FastAPI, s: Studio) -> None:
    store, limits, gate = s.store, s.limits, s.gate

    def keep(request: Request, model: ServedModel, arrays: Any, items: Sequence[dict[str, Any]], workflow: str,
             fields: dict[str, Any], bodies: Sequence[dict[str, Any]], seed: Callable[[int], int | None]
             ) -> tuple[list[bytes], list[int]]:
        """Encode each image (scale 1) and keep them in the gallery, in one transaction; returns the PNGs and
        their gallery ids."""
        created, batch = created_now(), []
        for i, (arr, item, body) in enumerate(zip(arrays, items, bodies, strict=True)):
            meta = model.metadata(workflow=workflow, **fields, **item, created=created)
            settings = {"endpoint": f"/api/{workflow.removeprefix('studio-')}", "body": body,
                        "index": item.get("variation", item.get("frame", 0))}
            batch.append((encode_image(arr, "png", meta), {
                "model": model.name, "kind": model.kind, "workflow": workflow, "settings": settings,
                "provenance": meta, "seed": seed(i), "step": model.model.step,
                "weights_sha256": model.model.weights_sha256, "user": user(request)}))
        records = s.gallery.add_many(batch)
        return [png for png, _ in batch], [r["id"] for r in records]

    def respond(request: Request, model: ServedModel, images: torch.Tensor, items: Sequence[dict[str, Any]],
                req: _Request, workflow: str, body: dict[str, Any], seed_of: Callable[[int], int | None],
                nrow: int | None = None, **fields: Any) -> Response:
        """PNG (one image, or a grid) or JSON with one PNG per image; each PNG carries its provenance."""
        fields = {**fields, **{k: v for k, v in base(req).items() if k != "model"}}
        saved: list[bytes] | None = None
        ids: list[int] = []
        if req.save:
            per_image = [body if workflow != "studio-generate" else {**body, "seeds": [it["seed"]]} for it in items]
            saved, ids = keep(request, model, to_uint8_array(images), items, workflow, fields, per_image, seed_of)
        if req.scale > 1:
            # Nearest neighbour: a 28 px digit enlarged for a layout keeps its pixels, not a blur.
            images = images.repeat_interleave(req.scale, dim=2).repeat_interleave(req.scale, dim=3)
            fields["scale"] = req.scale
        if req.format == "json":
            out = []
            for i, (img, item) in enumerate(zip(to_uint8_array(images), items, strict=True)):
                png = saved[i] if saved is not None and req.scale == 1 else encode_image(
                    img, "png", model.metadata(workflow=workflow, **fields, **item))
                out.append({**item, "image": _data_url(png), **({"gallery_id": ids[i]} if ids else {})})
            return JSONResponse({"model": model.name, "workflow": workflow, **fields, "images": out})
        meta = model.metadata(workflow=workflow, n=len(items), **fields,
                              **{k: ",".join(str(it[k]) for it in items) for k in items[0]})
        picture = images[0] if len(images) == 1 else make_grid(images, nrow=nrow)
        headers = {f"X-Atelier-{k.capitalize()}": ",".join(str(it[k]) for it in items) for k in items[0]}
        if ids:
            headers["X-Atelier-Gallery-Ids"] = ",".join(map(str, ids))
        return Response(encode_image(picture, "png", meta), media_type="image/png", headers=headers)

    def checked_sampling(req: _Request, model: ServedModel, n: int) -> dict[str, Any]:
        """The request's diffusion settings, checked against the model before it waits for the queue."""
        sampling = {k: v for k, v in (("steps", req.steps), ("sampler", req.sampler), ("guidance", req.guidance))
                    if v is not None}
        try:
            with_sampling(model.model, **sampling)  # type: ignore[arg-type]
        except AtelierError as exc:
            raise HTTPException(400, str(exc)) from None
        if sampling and n * int(sampling.get("steps") or 0) > limits.max_batch * MAX_STEPS // 4:
            raise HTTPException(400, f"{n} images x {sampling['steps']} steps is more denoiser work than this server "
                                     "does in one request; ask for fewer images or steps")
        return sampling

    def from_latents(req: _Request, n: int, limit: int, what: str,
                     make_z: Callable[[ServedModel], torch.Tensor]) -> tuple[ServedModel, torch.Tensor]:
        """Check a latent-space request against the limits, then run the generator on the model threads."""
        model = _generator(store, req.model)
        _check_batch(n, limit, what)
        _check_output(n, model, req.scale, limits)
        labels = _label(model, req.label, n)
        sampling = checked_sampling(req, model, n)
        if getattr(model.model, "supports_truncation", False):  # in w, towards the tracked average (StyleGAN)
            z, psi = make_z(model), req.truncation
        else:                                                    # a Gaussian z scaled towards 0
            z, psi = latent.truncate(make_z(model), req.truncation), 1.0
        return model, gate.run(lambda: model.generate(z, labels, psi, sampling))

    def base(req: _Request) -> dict[str, Any]:
        optional = {k: getattr(req, k) for k in ("label", "steps", "sampler", "guidance")
                    if getattr(req, k) is not None}
        return {"model": req.model, "truncation": req.truncation, **optional}

    @app.post("/api/generate", responses={200: {"content": {"image/png": {}}}})
    def generate(req: GenerateRequest, request: Request) -> Response:
        """Images from seeds (``seeds``, or ``n`` consecutive seeds from ``seed``), with truncation ψ."""
        seeds = req.seeds
        if seeds is None:
            seeds = list(range(req.seed, min(req.seed + (req.n or 1), MAX_SEED + 1)))
        model, images = from_latents(req, len(seeds), limits.max_batch, "images", lambda m: m.latents(seeds))
        return respond(request, model, images, [{"seed": x} for x in seeds], req, "studio-generate", base(req),
                       lambda i: seeds[i])

    @app.post("/api/variations", responses={200: {"content": {"image/png": {}}}})
    def variations(req: VariationsRequest, request: Request) -> Response:
        """Small latent perturbations around one seed's image."""
        model, images = from_latents(req, req.n, limits.max_batch, "variations", lambda m: latent.variations(
            m.latents([req.seed]), req.n, req.strength, req.variation_seed))
        body = {**base(req), "seed": req.seed, "n": req.n, "strength": req.strength,
                "variation_seed": req.variation_seed}
        return respond(request, model, images, [{"variation": i} for i in range(req.n)], req, "studio-variations",
                       body, lambda i: req.seed, seed=req.seed, strength=req.strength,
                       variation_seed=req.variation_seed)

    @app.post("/api/interpolate", responses={200: {"content": {"image/png": {}}}})
    def interpolate(req: InterpolateRequest, request: Request) -> Response:
        """A strip of frames from ``seed_a`` to ``seed_b``: spherical (slerp) or linear in z, or, for a model with a
        mapping network, linear in w (``mode`` does not apply)."""
        model = _generator(store, req.model)
        g = model.model
        if isinstance(g, Generator) and g.supports_truncation:
            _check_batch(req.frames, limits.max_frames, "frames")
            _check_output(req.frames, model, req.scale, limits)
            checked_sampling(req, model, req.frames)  # a GAN has none: set, they are a 400
            labels = _label(model, req.label, 2)
            images = gate.run(lambda: g.walk(g.latents(seeds=[req.seed_a, req.seed_b]), req.frames, "lerp",
                                             req.truncation, labels))
        else:
            model, images = from_latents(req, req.frames, limits.max_frames, "frames",
                                         lambda m: latent.interpolate_path(m.latents([req.seed_a, req.seed_b]),
                                                                           req.frames, req.mode))
        body = {**base(req), "seed_a": req.seed_a, "seed_b": req.seed_b, "frames": req.frames, "mode": req.mode}
        return respond(request, model, images, [{"frame": i} for i in range(req.frames)], req, "studio-interpolate",
                       body, lambda i: None, nrow=req.frames, seed_a=req.seed_a, seed_b=req.seed_b, mode=req.mode)

    def image_to_image(request: Request, capability: str, model_name: str, file: UploadFile, what: str,
                       save: bool) -> Response:
        available = store.with_capability(capability)
        if not available:
            raise HTTPException(404, f"no model of this kind is loaded: {capability} needs {what} in the runs folder")
        if model_name not in available:
            raise HTTPException(404, f"no {capability} model named {model_name!r}; available: {', '.join(available)}")
        model = store.get(model_name)
        data = read_upload(file, limits)
        image = load_image(data, channels=int(model.info().get("channels") or 3), name=file.filename or "the upload",
                           max_pixels=limits.max_upload_pixels)
        out = gate.run(lambda: getattr(model, capability)(image))
        source = (file.filename or "upload")[:200]
        workflow = f"studio-{capability}"
        meta = model.metadata(workflow=workflow, source=source)
        if not save:
            return Response(encode_image(out, "png", meta), media_type="image/png")
        meta["created"] = created_now()
        png = encode_image(out, "png", meta)
        body = {"model": model_name, "input": source, "input_sha256": hashlib.sha256(data).hexdigest()}
        rec = s.gallery.add(png, model=model.name, kind=model.kind, workflow=workflow, provenance=meta,
                            settings={"endpoint": f"/api/{capability}", "body": body, "index": 0},
                            step=model.model.step, weights_sha256=model.model.weights_sha256, user=user(request))
        return Response(png, media_type="image/png", headers={"X-Atelier-Gallery-Ids": str(rec["id"])})

    @app.post("/api/stylize", responses={200: {"content": {"image/png": {}}}})
    def stylize(model: Annotated[str, Form(max_length=200)], file: Annotated[UploadFile, File()], request: Request,
                save: Annotated[bool, Form()] = False) -> Response:
        """Restyle an uploaded image with a trained fast style network."""
        return image_to_image(request, "stylize", model, file, "a fast style network run (`atelier train-style`)",
                              save)

    @app.post("/api/translate", responses={200: {"content": {"image/png": {}}}})
    def translate(model: Annotated[str, Form(max_length=200)], file: Annotated[UploadFile, File()], request: Request,
                  save: Annotated[bool, Form()] = False) -> Response:
        """Translate an uploaded image (e.g. facade labels -> photo) with a trained pix2pix generator."""
        return image_to_image(request, "translate", model, file, "an image-to-image (pix2pix) run", save)

    @app.post("/api/verify")
    def verify(file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        """Provenance report of an uploaded image: metadata, watermark, C2PA."""
        check = _verifier()
        if check is None:
            raise HTTPException(404, "provenance verification is not available in this build")
        data = file.file.read(limits.max_upload_bytes + 1)
        if not data or len(data) > limits.max_upload_bytes:
            raise HTTPException(400 if not data else 413, "attach an image file within the upload limit")
        suffix = Path(file.filename or "").suffix.lower()
        suffix = suffix if suffix in IMAGE_SUFFIXES else ".png"  # never a client-chosen path component
        with tempfile.TemporaryDirectory(prefix="atelier-verify-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            # Watermarks are matched against the runs this server serves.
            report = dict(check(path, runs_dir=store.roots[0]))
        # Names, not this server's paths: the temporary file, and the matched run folder.
        report["image"] = file.filename or "upload"
        if isinstance(report.get("watermark"), dict) and report["watermark"].get("run"):
            report["watermark"]["run"] = Path(report["watermark"]["run"]).name
        return report
