"""The studio's latent tools: style-mixing grids, direction sliders over a sampled or projected image.

* ``POST /api/mix``: a style-mixing grid (a StyleGAN-type model): rows take the coarse styles, columns the
  fine ones (:func:`atelier.api.sample.mix_cells`, the grid ``atelier mix`` writes).
* ``GET /api/models/{name}/directions?method=sefa``: the model's strongest latent directions (SeFa, PCA or,
  for a conditional model, class means; :mod:`atelier.inversion.directions`), computed once per model.
* ``POST /api/directions``: one image: a seed's latent (or a projected one) moved along several directions at
  once, one amount per slider, in standard deviations of the sampled latents along each direction.
* ``POST /api/project``: an uploaded image projected into the model (:func:`atelier.api.project`, a bounded
  number of steps, no noise maps so that the latent alone redraws it); returns the latent for the sliders.

Every image carries the model's provenance, as everything the studio makes.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

import torch
from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from atelier.api.project import project, read_latent
from atelier.api.sample import mix_cells
from atelier.errors import AtelierError
from atelier.imageio import encode_image
from atelier.images import load_image, make_grid
from atelier.inversion import Directions, combine, find_directions, has_mapping, render
from atelier.latent import to_uint8
from atelier.loaded import Generator
from atelier.serve.context import Studio
from atelier.serve.generate import Psi, Seed, _data_url, read_upload, served
from atelier.serve.registry import ServedModel

__all__ = ["MAX_PROJECT_STEPS", "MAX_SLIDERS", "add_latent_routes"]

MAX_SLIDERS = 8           # directions moved at once
MAX_MIX = 8               # row / column seeds of a mixing grid
MAX_PROJECT_STEPS = 300   # a projection is seconds to a minute on a CPU; the CLI has no such bound
MAX_LATENT = 32 * 1024    # values in an uploaded latent (w+ of a 128 px StyleGAN2 is 12 x 512)
Method = Literal["sefa", "pca", "class"]


class MixRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=200)
    rows: list[Seed] = Field(min_length=1, max_length=MAX_MIX, description="Seeds giving the coarse styles.")
    cols: list[Seed] = Field(min_length=1, max_length=MAX_MIX, description="Seeds giving the fine styles.")
    crossover: int | None = Field(None, ge=1, le=4096, description="Feature size (px) where the column's styles start.")
    truncation: Psi = 1.0
    label: int | None = Field(None, ge=0, le=100_000)


class DirectionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=200)
    method: Method = "sefa"
    amounts: list[Annotated[float, Field(ge=-10, le=10)]] = Field(
        max_length=MAX_SLIDERS, description="One amount per direction, strongest first (standard deviations).")
    seed: Seed | None = Field(None, description="Start from this seed's image; or give latent.")
    latent: list[float] | list[list[float]] | None = Field(
        None, description="A projected latent (POST /api/project): w, w+ or z.")
    truncation: Psi = 1.0
    label: int | None = Field(None, ge=0, le=100_000)


def _generator(model: ServedModel) -> Generator:
    g = model.model
    if not isinstance(g, Generator):
        raise HTTPException(400, f"model {model.name!r} is a {model.kind} model; latent tools need a generator")
    return g


def _png(model: ServedModel, image: torch.Tensor | Image.Image, workflow: str, **fields: Any) -> Response:
    return Response(encode_image(image, "png", model.metadata(workflow=workflow, **fields)), media_type="image/png")


def add_latent_routes(app: FastAPI, s: Studio) -> None:
    store, limits, gate = s.store, s.limits, s.gate
    cache: dict[tuple[str, str], Directions] = {}
    cache_lock = threading.Lock()

    def directions_of(model: ServedModel, method: str) -> Directions:
        key = (model.name, method)
        with cache_lock:
            if key not in cache:
                try:
                    cache[key] = gate.run(lambda: find_directions(_generator(model).network, method, None, 0))
                except AtelierError as exc:
                    raise HTTPException(400, str(exc)) from None
            return cache[key]

    def label_of(g: Generator, label: int | None) -> int | None:
        if label is not None and not 0 <= label < g.num_classes:
            raise HTTPException(400, f"label {label} is out of range: the model has {g.num_classes} classes"
                                if g.num_classes else "this model has no classes; leave out 'label'")
        if label is None and g.num_classes:
            return 0
        return label

    @app.post("/api/mix", responses={200: {"content": {"image/png": {}}}})
    def mix(req: MixRequest) -> Response:
        """A style-mixing grid: the top row the column seeds, the left column the row seeds, cell (i, j) the row
        seed's styles below ``crossover`` px and the column seed's from there on."""
        model = served(store, req.model)
        g = _generator(model)
        if not g.supports_truncation:
            raise HTTPException(400, f"style mixing needs a model with a mapping network (stylegan2); "
                                     f"{req.model!r} is a {g.cfg.model['name']} model")
        label = label_of(g, req.label)
        try:
            cells = gate.run(lambda: mix_cells(g, req.rows, req.cols, req.crossover, req.truncation, label))
        except AtelierError as exc:
            raise HTTPException(400, str(exc)) from None
        return _png(model, make_grid(cells, nrow=len(req.cols) + 1), "studio-mix", rows=",".join(map(str, req.rows)),
                    cols=",".join(map(str, req.cols)), crossover=req.crossover or g.default_crossover,
                    truncation=req.truncation)

    @app.get("/api/models/{name}/directions")
    def list_directions(name: str, method: Annotated[Method, Query()] = "sefa",
                        k: Annotated[int, Query(ge=1, le=64)] = MAX_SLIDERS) -> dict[str, Any]:
        """The strongest ``k`` directions of a generator: index, and the method's value (eigenvalue, variance or
        class index) of each."""
        model = served(store, name)
        d = directions_of(model, method)
        return {"model": name, "method": method, "space": d.space, "orthonormal": d.orthonormal,
                "directions": [{"index": i, "value": float(d.values[i])} for i in range(min(k, len(d)))]}

    @app.post("/api/directions", responses={200: {"content": {"image/png": {}}}})
    def move_along(req: DirectionsRequest) -> Response:
        """A seed's (or a projected) latent moved by ``amounts[i]`` along direction i, as one image."""
        if (req.seed is None) == (req.latent is None):
            raise HTTPException(400, "give a seed or a latent (one of the two)")
        model = served(store, req.model)
        g = _generator(model)
        label = label_of(g, req.label)
        d = directions_of(model, req.method)
        net, seed = g.network, req.seed or 0

        def draw() -> torch.Tensor:
            if req.latent is not None:
                try:
                    flat = torch.tensor(req.latent, dtype=torch.float32)
                except ValueError:
                    raise AtelierError("the latent must be a list of numbers or a list of equal-length lists") from None
                if flat.numel() > MAX_LATENT:
                    raise AtelierError(f"the latent has {flat.numel()} values; at most {MAX_LATENT}")
                lat, space = read_latent(g, flat)
            elif has_mapping(net):
                z = g.latents(seeds=[seed]).to(g.device)
                y = None if label is None else torch.tensor([label], device=g.device)
                lat, space = net.mapping(z, y, psi=req.truncation)[0, 0].float().cpu(), "w"   # type: ignore[operator]
            else:
                lat, space = g.latents(seeds=[seed])[0] * req.truncation, "z"
            if space == "w+" and d.space == "w" or space == d.space:
                moved = combine(lat, d, req.amounts)
            else:
                raise AtelierError(f"a {space} latent cannot move along {d.space} directions")
            with torch.no_grad():
                return to_uint8(render(net, moved[None].to(g.device), space, label).clamp(-1, 1))[0]

        try:
            image = gate.run(draw)
        except AtelierError as exc:
            raise HTTPException(400, str(exc)) from None
        return _png(model, image, "studio-directions", method=req.method,
                    amounts=",".join(f"{a:g}" for a in req.amounts),
                    **({"seed": req.seed} if req.seed is not None else {"latent": "projected"}),
                    truncation=req.truncation)

    @app.post("/api/project")
    def project_upload(model: Annotated[str, Form(max_length=200)], file: Annotated[UploadFile, File()],
                       steps: Annotated[int, Form(ge=1, le=MAX_PROJECT_STEPS)] = 100,
                       space: Annotated[Literal["w", "w+", "z"] | None, Form()] = None) -> dict[str, Any]:
        """Project an uploaded image into a generator: the latent (for ``POST /api/directions``), the scores,
        and the reconstruction as a data URL."""
        served_model = served(store, model)
        g = _generator(served_model)
        data = read_upload(file, limits)
        image = load_image(data, channels=g.channels, name=file.filename or "the upload",
                           max_pixels=limits.max_upload_pixels)
        try:
            result = gate.run(lambda: project(g, image, space=space, steps=steps, noise=False))
        except AtelierError as exc:
            raise HTTPException(400, str(exc)) from None
        p = result.projection
        png = encode_image(p.image, "png", served_model.metadata(workflow="studio-project", steps=steps,
                                                                 space=p.space))
        return {"model": model, "space": p.space, "latent": p.latent.tolist(), "label": p.label,
                "psnr": result.psnr, "ssim": result.ssim, "steps": steps, "seconds": round(p.seconds, 2),
                "distance": p.distance, "reconstruction": _data_url(png)}
