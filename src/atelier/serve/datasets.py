"""New models from a designer's pictures: upload a zip or pick a server folder, see the summary and the
recommended recipe, and plan a run (the job itself is queued by :mod:`atelier.serve.jobs`).

No endpoint takes a path on the server: a folder pick names a data root by its index and a folder inside it
(checked to stay inside, links included); a dataset is then known by its id, and its folder and contact sheet
are looked up, never built from the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from atelier import families
from atelier.api.newmodel import plan_training, trainable_families
from atelier.api.uploads import list_subfolders, resolve_under
from atelier.serve.context import Studio, user

__all__ = ["MULTIPART_OVERHEAD", "PlanRequest", "add_dataset_routes", "public_dataset"]

MULTIPART_OVERHEAD = 1024 * 1024  # the multipart framing around an uploaded zip


class FolderPick(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: int = Field(0, ge=0, le=1000, description="Index of a data root (GET /api/folders lists them).")
    path: str = Field("", max_length=1000, description="A folder inside that root, relative to it.")


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    family: str | None = Field(None, max_length=64, description="A family from GET /api/families; default: the "
                                                                  "recommended one.")
    resolution: int | None = Field(None, ge=8, le=1024)
    budget: dict[str, float] | None = Field(None, description='{"minutes": 10}, {"images": 200000} or '
                                                               '{"steps": 500}; default 10 minutes.')
    extra: str | None = Field(None, max_length=4000, description="More config keys, one `key=value` per line "
                                                                 "(model, training and logging knobs).")


def public_dataset(d: dict[str, Any]) -> dict[str, Any]:
    """A dataset as the page sees it: no server paths."""
    summary = {k: v for k, v in d["report"].items() if k != "source"}
    recipe = {"overrides": {k: v for k, v in d["recipe"]["overrides"].items() if k != "data.source"},
              "reasons": d["recipe"]["reasons"]}
    return {"id": d["id"], "name": d["name"], "origin": d["origin"], "summary": summary, "recipe": recipe,
            "created_at": d["created_at"], "sheet": f"/api/datasets/{d['id']}/sheet.png"}


def add_dataset_routes(app: FastAPI, s: Studio) -> None:
    roots = s.settings.data_roots
    limits = s.settings.upload

    @app.get("/api/families")
    def list_families() -> dict[str, Any]:
        """Families a new model can be trained with from a folder of pictures (every registered generator)."""
        return {"trainable": trainable_families(), "registered": families.registered()}

    # The limit of the body (the zip and its multipart framing); a Content-Length over it is refused before the
    # body is read (atelier.serve.gate.BodySize), with the same numbers.
    @app.post("/api/datasets", status_code=201, max_body_size=limits.max_zip_bytes + MULTIPART_OVERHEAD)
    def upload_dataset(file: Annotated[UploadFile, File(description="A .zip of images")],
                       request: Request) -> dict[str, Any]:
        """Upload a zip of pictures: checked (paths, links, sizes, pixels), unpacked, described, and given a
        recommended recipe."""
        if s.runs_dir is None:
            raise HTTPException(400, "this studio serves a single run folder; serve a folder of runs to train")
        size = file.size if file.size is not None else 0
        if size > limits.max_zip_bytes:
            raise HTTPException(413, f"the upload is {size:,} bytes; the limit is {limits.max_zip_bytes:,}")
        d = s.datasets.add_upload(file.file, file.filename or "upload.zip", limits, user=user(request))
        return public_dataset(d)

    @app.get("/api/folders")
    def folders(root: int = Query(0, ge=0, le=1000), path: str = Query("", max_length=1000)) -> dict[str, Any]:
        """Browse the data roots (server folders a designer may train from): sub-folders and image counts."""
        if not roots:
            return {"roots": [], "folders": [], "images": 0, "root": None, "path": ""}
        if root >= len(roots):
            raise HTTPException(404, f"no data root {root}; there are {len(roots)}")
        folder = resolve_under(roots[root], path)
        subs, n = list_subfolders(folder)
        rel = folder.relative_to(roots[root].resolve()).as_posix()
        return {"roots": [r.name or str(i) for i, r in enumerate(roots)], "root": root,
                "path": "" if rel == "." else rel, "folders": subs, "images": n}

    @app.post("/api/datasets/folder", status_code=201)
    def pick_folder(pick: FolderPick, request: Request) -> dict[str, Any]:
        """Train from a folder under a data root: described and given a recommended recipe."""
        if s.runs_dir is None:
            raise HTTPException(400, "this studio serves a single run folder; serve a folder of runs to train")
        if pick.root >= len(roots):
            raise HTTPException(404, "no such data root" if roots else
                                "this studio has no data roots (start it with --data-root FOLDER); upload a zip")
        return public_dataset(s.datasets.add_folder(resolve_under(roots[pick.root], pick.path), user=user(request)))

    @app.get("/api/datasets")
    def list_datasets() -> dict[str, Any]:
        return {"datasets": [public_dataset(d) for d in s.datasets.recent()]}

    @app.get("/api/datasets/{dataset_id}")
    def get_dataset(dataset_id: str) -> dict[str, Any]:
        return public_dataset(s.datasets.get(dataset_id))

    @app.get("/api/datasets/{dataset_id}/sheet.png", responses={200: {"content": {"image/png": {}}}})
    def dataset_sheet(dataset_id: str) -> FileResponse:
        """The dataset's contact sheet: its first 64 pictures."""
        return FileResponse(s.datasets.sheet(dataset_id), media_type="image/png")

    @app.post("/api/datasets/{dataset_id}/plan")
    def plan(dataset_id: str, req: PlanRequest) -> dict[str, Any]:
        """The run config the recipe (as edited) would train with, or a 400 saying what is wrong with it."""
        cfg, reasons = plan_training(s.datasets.get(dataset_id), req.family, req.resolution, req.budget, req.extra)
        return {"config": summary(cfg), "reasons": reasons}


def summary(cfg: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run config a designer recognises (no server paths)."""
    try:
        t = cfg["train"]
        budget = next(({k: t[k]} for k in ("minutes", "images", "steps") if t.get(k) is not None), {})
        return {"family": cfg["model"]["name"], "resolution": cfg["data"]["resolution"],
                "channels": cfg["data"]["channels"], "batch_size": t["batch_size"], "budget": budget,
                "model": {k: v for k, v in cfg["model"].items() if k != "name"},
                "eval_every": cfg["eval"]["every"]}
    except (KeyError, TypeError, AttributeError):  # a job queued from Python with a partial config
        return {}
