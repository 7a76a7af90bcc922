"""The studio's HTTP API (FastAPI) and the static web page it serves.

Endpoints are plain ``def`` functions, so FastAPI runs them in its worker thread pool and a forward pass
never blocks the event loop; a :class:`Gate` bounds how many run at once and how many may wait, and
answers 429 beyond that. Every image leaves through :func:`atelier.imageio.encode_image`, the code
``save_image`` uses, so a downloaded image carries the same provenance as one written by the CLI.
Errors a client can cause are 4xx with a one-line ``detail``; a 5xx is a bug.
"""

from __future__ import annotations

import base64
import importlib.resources
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import torch
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from atelier import latent
from atelier.errors import AtelierError
from atelier.imageio import encode_image
from atelier.images import IMAGE_SUFFIXES, load_image, make_grid, to_uint8_array
from atelier.serve.registry import ModelStore, ServedModel

__all__ = ["Limits", "create_app"]

T = TypeVar("T")
STATIC = Path(__file__).parent / "static"
MAX_SEED = 2**31 - 1  # fits a JavaScript integer and a URL without surprises
# Hard caps written into the OpenAPI schema; Limits may lower them per server.
MAX_BATCH = 64
MAX_FRAMES = 64


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond these the server answers a 4xx that names the limit."""

    max_batch: int = MAX_BATCH  # images per generate / variations request
    max_frames: int = MAX_FRAMES  # frames per interpolation
    max_upload_bytes: int = 16 * 1024 * 1024  # whole request body (multipart overhead included)
    max_upload_pixels: int = 4096 * 4096  # decoded size of an uploaded image (decompression bombs)
    max_concurrent: int = 2  # forward passes at once (this CPU has 2 cores)
    max_waiting: int = 128  # requests queued for a slot before the server says 429
    wait_seconds: float = 30.0  # how long a queued request waits for a slot before 429
    max_output_pixels: int = 16_000_000  # pixels of all images in one response, after ``scale``


class Gate:
    """A bounded queue in front of the models: ``max_concurrent`` forward passes at work, ``max_waiting`` in line.

    Forward passes run on a small fixed pool of threads rather than on whichever of FastAPI's ~40 worker
    threads took the request: PyTorch's per-thread intra-op state stays warm on a reused thread (a fresh
    thread's first passes measured 2-3x slower), and at most ``max_concurrent`` compete for the cores.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=limits.max_concurrent, thread_name_prefix="atelier-model")
        self._waiting = 0
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._waiting >= self.limits.max_waiting:
                raise _busy(f"{self._waiting} requests are already in line")
            self._waiting += 1
        try:
            future = self._pool.submit(fn)
            try:
                return future.result(timeout=self.limits.wait_seconds)
            except FuturesTimeout:
                if future.cancel():  # still queued: give up on it
                    raise _busy(f"no model was free within {self.limits.wait_seconds:g} s") from None
                return future.result()  # already running: let it finish
        finally:
            with self._lock:
                self._waiting -= 1


def _busy(why: str) -> HTTPException:
    return HTTPException(429, f"the server is busy ({why}); retry in a moment", headers={"Retry-After": "1"})


# ------------------------------------------------------------------------------------------ requests
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


# ------------------------------------------------------------------------------------------- helpers
def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _check_output(n: int, model: ServedModel, scale: int, limits: Limits) -> None:
    info = model.info()
    pixels = n * int(info.get("resolution", 1)) ** 2 * scale**2
    if pixels > limits.max_output_pixels:
        raise HTTPException(400, f"{n} images at scale {scale} would be {pixels:,} pixels; this server returns at most "
                                 f"{limits.max_output_pixels:,} per request (ask for fewer images or a smaller scale)")


def _image_response(model: ServedModel, images: torch.Tensor, items: Sequence[dict[str, Any]], req: _Request,
                    workflow: str, nrow: int | None = None, **fields: Any) -> Response:
    """PNG (one image, or a grid) or JSON with one PNG per image; each PNG carries its provenance."""
    fmt = req.format
    fields = {**fields, "truncation": req.truncation, **({"label": req.label} if req.label is not None else {})}
    if req.scale > 1:
        # Nearest neighbour: a 28 px digit enlarged for a layout keeps its pixels, not a blur.
        images = images.repeat_interleave(req.scale, dim=2).repeat_interleave(req.scale, dim=3)
        fields["scale"] = req.scale
    if fmt == "json":
        out = []
        for img, item in zip(to_uint8_array(images), items, strict=True):
            meta = model.metadata(workflow=workflow, **fields, **item)
            out.append({**item, "image": _data_url(encode_image(img, "png", meta))})
        return JSONResponse({"model": model.name, "workflow": workflow, **fields, "images": out})
    meta = model.metadata(workflow=workflow, n=len(items), **fields,
                          **{k: ",".join(str(it[k]) for it in items) for k in items[0]})
    picture = images[0] if len(images) == 1 else make_grid(images, nrow=nrow)
    headers = {f"X-Atelier-{k.capitalize()}": ",".join(str(it[k]) for it in items) for k in items[0]}
    return Response(encode_image(picture, "png", meta), media_type="image/png", headers=headers)


def _label(model: ServedModel, label: int | None, n: int) -> torch.Tensor | None:
    classes = model.info().get("classes")
    if label is None:
        return None
    if not classes:
        raise HTTPException(400, f"model {model.name!r} has no classes; leave out 'label'")
    if label >= len(classes):
        raise HTTPException(400, f"label {label} is out of range: model {model.name!r} has {len(classes)} classes")
    return torch.full((n,), label, dtype=torch.long)


def _generator(store: ModelStore, name: str) -> ServedModel:
    model = _model(store, name)
    if "generate" not in model.capabilities:
        raise HTTPException(400, f"model {name!r} is a {model.kind} model; it does not generate from seeds")
    return model


def _model(store: ModelStore, name: str) -> ServedModel:
    try:
        return store.get(name)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None


def _check_batch(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise HTTPException(400, f"{n} {what} asked for; this server allows at most {limit} per request")


def _read_upload(upload: UploadFile, limits: Limits, channels: int) -> Any:
    data = upload.file.read(limits.max_upload_bytes + 1)
    if len(data) > limits.max_upload_bytes:
        raise HTTPException(413, f"the upload is over {limits.max_upload_bytes:,} bytes")
    if not data:
        raise HTTPException(400, "the upload is empty; attach an image file")
    return load_image(data, channels=channels, name=upload.filename or "the upload",
                      max_pixels=limits.max_upload_pixels)


def _info_or_error(store: ModelStore, name: str) -> dict[str, Any]:
    # One run that cannot be loaded (a half-copied checkpoint) must not hide the others from the page.
    try:
        return store.get(name).info()
    except AtelierError as exc:
        run_dir, family = store.runs[name]
        return {"name": name, "kind": family.kind, "capabilities": [], "card": None, "error": str(exc)}


def _verifier() -> Any:
    from atelier import provenance

    return getattr(provenance, "verify_image", None)


class ServerTiming:
    """Adds ``Server-Timing: app;dur=<ms>`` to every response: the time from request to response headers,
    so clients (the page, benchmarks/serve_speed.py) can tell server time from network time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                message["headers"] = [*message.get("headers", []), (b"server-timing", f"app;dur={ms:.2f}".encode())]
            await send(message)

        await self.app(scope, receive, timed_send)


# ----------------------------------------------------------------------------------------------- app
# Swagger UI 5 (OpenAPI 3.1, what FastAPI writes), as the fastapi-offline package ships it.
DOCS_ASSETS = importlib.resources.files("fastapi_offline") / "static"


def create_app(runs: str | Path | Sequence[str | Path] | ModelStore, backend: str = "torch",
               limits: Limits | None = None, device: str = "cpu") -> FastAPI:
    """The studio app over the run folders in ``runs`` (a folder of runs, one run, or a list)."""
    from atelier.version import __version__

    limits = limits or Limits()
    store = runs if isinstance(runs, ModelStore) else ModelStore(runs, backend=backend, device=device)
    gate = Gate(limits)
    # docs_url=None: the API page is served below with Swagger UI's files from the fastapi-offline package, not
    # from a CDN, so it renders offline (FastAPI's "self-hosting JavaScript and CSS for docs").
    app = FastAPI(title="atelier studio", version=__version__, max_body_size=limits.max_upload_bytes,
                  docs_url=None, redoc_url=None,
                  description="Generate, vary and interpolate images from atelier's trained models. "
                              "Every image returned carries atelier's provenance metadata.")
    app.state.store, app.state.limits = store, limits
    app.add_middleware(ServerTiming)

    @app.exception_handler(AtelierError)
    def _user_error(request: Request, exc: AtelierError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

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
        """Every servable model with its capabilities and model card, and this server's limits."""
        return {"models": [_info_or_error(store, n) for n in store.names()],
                "verify": _verifier() is not None,
                "limits": {k: v for k, v in asdict(limits).items() if k.startswith("max_")}}

    @app.get("/api/models/{name}")
    def model_info(name: str) -> dict[str, Any]:
        return _model(store, name).info()

    def _from_latents(req: _Request, n: int, limit: int, what: str,
                      make_z: Callable[[ServedModel], torch.Tensor]) -> tuple[ServedModel, torch.Tensor]:
        """Check a latent-space request against the limits, then run the generator on the model threads."""
        model = _generator(store, req.model)
        _check_batch(n, limit, what)
        _check_output(n, model, req.scale, limits)
        labels = _label(model, req.label, n)
        z = latent.truncate(make_z(model), req.truncation)
        return model, gate.run(lambda: model.generate(z, labels))

    @app.post("/api/generate", responses={200: {"content": {"image/png": {}}}})
    def generate(req: GenerateRequest) -> Response:
        """Images from seeds (``seeds``, or ``n`` consecutive seeds from ``seed``), with truncation ψ."""
        seeds = req.seeds
        if seeds is None:
            seeds = list(range(req.seed, min(req.seed + (req.n or 1), MAX_SEED + 1)))
        model, images = _from_latents(req, len(seeds), limits.max_batch, "images", lambda m: m.latents(seeds))
        return _image_response(model, images, [{"seed": s} for s in seeds], req, "studio-generate")

    @app.post("/api/variations", responses={200: {"content": {"image/png": {}}}})
    def variations(req: VariationsRequest) -> Response:
        """Small latent perturbations around one seed's image."""
        model, images = _from_latents(req, req.n, limits.max_batch, "variations", lambda m: latent.variations(
            m.latents([req.seed]), req.n, req.strength, req.variation_seed))
        return _image_response(model, images, [{"variation": i} for i in range(req.n)], req, "studio-variations",
                               seed=req.seed, strength=req.strength, variation_seed=req.variation_seed)

    @app.post("/api/interpolate", responses={200: {"content": {"image/png": {}}}})
    def interpolate(req: InterpolateRequest) -> Response:
        """A strip of frames from ``seed_a`` to ``seed_b``, spherical (slerp) or linear."""
        model, images = _from_latents(req, req.frames, limits.max_frames, "frames", lambda m: latent.interpolate_path(
            m.latents([req.seed_a, req.seed_b]), req.frames, req.mode))
        return _image_response(model, images, [{"frame": i} for i in range(req.frames)], req, "studio-interpolate",
                               nrow=req.frames, seed_a=req.seed_a, seed_b=req.seed_b, mode=req.mode)

    def _image_to_image(capability: str, model_name: str, file: UploadFile, what: str) -> Response:
        available = store.with_capability(capability)
        if not available:
            raise HTTPException(404, f"no model of this kind is loaded: {capability} needs {what} in the runs folder")
        if model_name not in available:
            raise HTTPException(404, f"no {capability} model named {model_name!r}; available: {', '.join(available)}")
        model = store.get(model_name)
        image = _read_upload(file, limits, channels=int(model.info().get("channels", 3)))
        out = gate.run(lambda: getattr(model, capability)(image))
        meta = model.metadata(workflow=f"studio-{capability}", source=file.filename or "upload")
        return Response(encode_image(out, "png", meta), media_type="image/png")

    @app.post("/api/stylize", responses={200: {"content": {"image/png": {}}}})
    def stylize(model: Annotated[str, Form(max_length=200)], file: Annotated[UploadFile, File()]) -> Response:
        """Restyle an uploaded image with a trained fast style network."""
        return _image_to_image("stylize", model, file, "a fast style network run (`atelier train-style`)")

    @app.post("/api/translate", responses={200: {"content": {"image/png": {}}}})
    def translate(model: Annotated[str, Form(max_length=200)], file: Annotated[UploadFile, File()]) -> Response:
        """Translate an uploaded image (e.g. facade labels -> photo) with a trained pix2pix generator."""
        return _image_to_image("translate", model, file, "an image-to-image (pix2pix) run")

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

    return app

