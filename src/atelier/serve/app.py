"""The studio's HTTP API (FastAPI) and the static web page it serves.

The endpoints come in groups, one module each: making images (:mod:`~atelier.serve.generate`), new models
from a designer's pictures (:mod:`~atelier.serve.datasets`), training jobs and their live progress
(:mod:`~atelier.serve.jobs`), the gallery (:mod:`~atelier.serve.gallery`) and signing in
(:mod:`~atelier.serve.auth`). This module builds the app: the models listing, the page, the API docs, and the
error handling shared by all. Errors a client can cause are 4xx with a one-line ``detail``; a 5xx is a bug.
Training never runs in this process: jobs go to a queue that workers (``atelier worker``) take from.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from atelier.api.examples import example_input, thumbnail_path
from atelier.api.gallery import Gallery
from atelier.api.jobs import JobQueue
from atelier.api.newmodel import Datasets
from atelier.api.studio_db import Conflict, NotFound, connect
from atelier.api.uploads import UploadError
from atelier.errors import AtelierError
from atelier.imageio import encode_image
from atelier.provenance import COMPOSITE_SOURCE_TYPE
from atelier.serve.auth import Access, AuthMiddleware, add_auth_routes
from atelier.serve.context import Studio
from atelier.serve.datasets import MULTIPART_OVERHEAD, add_dataset_routes
from atelier.serve.edit import add_edit_routes
from atelier.serve.foundation import FoundationModels, add_foundation_routes
from atelier.serve.gallery import add_gallery_routes
from atelier.serve.gate import BodySize, Gate, Limits, ServerTiming
from atelier.serve.generate import _verifier, add_generate_routes, served
from atelier.serve.jobs import add_job_routes
from atelier.serve.latents import add_latent_routes
from atelier.serve.registry import ModelStore
from atelier.serve.settings import StudioSettings
from atelier.version import __version__

__all__ = ["STATIC", "Gate", "Limits", "create_app"]

STATIC = Path(__file__).parent / "static"
# Swagger UI 5 (OpenAPI 3.1, what FastAPI writes), as the fastapi-offline package ships it.
DOCS_ASSETS = importlib.resources.files("fastapi_offline") / "static"


def _info_or_error(store: ModelStore, name: str) -> dict[str, Any]:
    # One run that cannot be loaded (a half-copied checkpoint) must not hide the others from the page.
    try:
        return store.get(name).info()
    except AtelierError as exc:
        run_dir, family = store.runs[name]
        return {"name": name, "kind": family.kind, "capabilities": [], "card": None, "error": str(exc)}


def build_studio(runs: str | Path | Sequence[str | Path] | ModelStore, backend: str = "torch",
                 limits: Limits | None = None, device: str = "cpu",
                 settings: StudioSettings | None = None) -> Studio:
    limits = limits or Limits()
    store = runs if isinstance(runs, ModelStore) else ModelStore(runs, backend=backend, device=device)
    settings = (settings or StudioSettings()).resolved(store.roots)
    assert settings.db_url is not None
    engine = connect(settings.db_url)
    first = store.roots[0]
    runs_dir = None if (first / "config.yaml").is_file() else first
    return Studio(store=store, limits=limits, gate=Gate(limits), settings=settings,
                  queue=JobQueue(engine, runs_dir), datasets=Datasets(engine, settings.datasets_dir),
                  gallery=Gallery(engine), access=Access(settings.token, engine))


def create_app(runs: str | Path | Sequence[str | Path] | ModelStore, backend: str = "torch",
               limits: Limits | None = None, device: str = "cpu", settings: StudioSettings | None = None,
               foundation: Sequence[str | Path] = (), foundation_config: str | Path | None = None) -> FastAPI:
    """The studio app over the run folders in ``runs`` (a folder of runs, one run, or a list), and the
    foundation-model checkpoints in ``foundation`` (``foundation_config``: the configs of single files)."""
    s = build_studio(runs, backend, limits, device, settings)
    store, limits = s.store, s.limits
    # docs_url=None: the API page is served below with Swagger UI's files from the fastapi-offline package, not
    # from a CDN, so it renders offline (FastAPI's "self-hosting JavaScript and CSS for docs").
    app = FastAPI(title="atelier studio", version=__version__, max_body_size=limits.max_upload_bytes,
                  docs_url=None, redoc_url=None,
                  description="Generate, vary and interpolate images from atelier's trained models, train new "
                              "ones from your pictures, and curate a gallery. Every image returned carries "
                              "atelier's provenance metadata.")
    app.state.store, app.state.limits, app.state.studio = store, limits, s
    zip_limit = s.settings.upload.max_zip_bytes + MULTIPART_OVERHEAD

    def body_limit(method: str, path: str) -> int:
        return zip_limit if (method, path) == ("POST", "/api/datasets") else limits.max_upload_bytes

    app.add_middleware(BodySize, limit_of=body_limit)
    app.add_middleware(AuthMiddleware, access=s.access)
    app.add_middleware(ServerTiming)

    @app.exception_handler(AtelierError)
    def _user_error(request: Request, exc: AtelierError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else (
            413 if isinstance(exc, UploadError) and exc.too_large else 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail
        if exc.status_code == 413 and not str(detail).startswith(("the ", "an ", "a ")):
            detail = "the request body is over this server's upload limit"  # Starlette's own limit, in words
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=str(DOCS_ASSETS)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="atelier studio API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "models": len(store.names())}

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        """Every servable model with its capabilities and model card, this server's limits, and which runs are
        being trained by a studio job."""
        store.refresh()
        jobs = {j["name"]: {"id": j["id"], "state": j["state"]} for j in s.queue.recent()}
        listed = [{**_info_or_error(store, n), **({"job": jobs[n]} if n in jobs else {})} for n in store.names()]
        return {"models": listed, "verify": _verifier() is not None,
                "training": s.runs_dir is not None,
                "limits": {k: v for k, v in asdict(limits).items() if k.startswith("max_")}}

    @app.get("/api/models/{name}")
    def model_info(name: str) -> dict[str, Any]:
        return served(store, name).info()

    def run_dir(name: str) -> Path:
        store.refresh()
        if name not in store.runs:
            raise HTTPException(404, f"no model named {name!r:.80}")
        return store.runs[name][0]  # a looked-up entry: never a path built from the request

    @app.get("/api/models/{name}/thumbnail", responses={200: {"content": {"image/png": {}}}})
    def model_thumbnail(name: str) -> FileResponse:
        """The model's latest progress grid (any kind of model)."""
        path = thumbnail_path(run_dir(name))
        if path is None:
            raise HTTPException(404, f"model {name!r:.80} has no progress grid yet")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @app.get("/api/models/{name}/example", responses={200: {"content": {"image/png": {}}}})
    def model_example(name: str) -> Response:
        """An input to try a translator or a stylizer on, from the model's own data."""
        run_dir(name)
        arr = example_input(served(store, name).model)
        if arr is None:
            raise HTTPException(404, f"no example input for model {name!r:.80} (its data is not on this server, or "
                                     "it takes no input image)")
        # A picture from the training data, not a generated one: marked as such, and not watermarked.
        meta = {"workflow": "studio-example", "source": name, "DigitalSourceType": COMPOSITE_SOURCE_TYPE}
        return Response(encode_image(arr, "png", meta, watermark=False), media_type="image/png")

    add_auth_routes(app, s.access)
    add_generate_routes(app, s)
    add_edit_routes(app, s)
    add_latent_routes(app, s)
    add_dataset_routes(app, s)
    add_job_routes(app, s)
    add_gallery_routes(app, s)
    if foundation:   # diffusers is imported when the first checkpoint loads (the diffusion extra)
        app.state.foundation = FoundationModels(foundation, foundation_config, device)
        add_foundation_routes(app, s, app.state.foundation)
    return app
