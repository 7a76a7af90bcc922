"""The gallery from the page: browse everything made through the studio, favourites, collections, re-open an
image's settings, and download a selection as a zip (each image with its metadata, watermark and record).

Images are addressed by their gallery id (an integer) and kept in the database with their records: no path is
ever built from a request.
"""

from __future__ import annotations

import io
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from atelier.api.gallery import MAX_EXPORT
from atelier.serve.context import ID_MAX, IdItem, IdPath, Studio

__all__ = ["add_gallery_routes", "public_image"]


class Favourite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    favourite: bool = True


class Selection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[IdItem] = Field(min_length=1, max_length=MAX_EXPORT, description="Gallery image ids.")


class NewCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)


def public_image(rec: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in rec.items() if k not in ("key", "user")}, "url": f"/api/gallery/{rec['id']}/image.png"}


def add_gallery_routes(app: FastAPI, s: Studio) -> None:
    g = s.gallery

    @app.get("/api/gallery")
    def gallery(model: str | None = Query(None, max_length=200), favourite: bool | None = None,
                collection: int | None = Query(None, ge=1, le=ID_MAX), limit: int = Query(60, ge=1, le=500),
                before: int | None = Query(None, ge=1, le=ID_MAX)) -> dict[str, Any]:
        """Images made through the studio, newest first (``before``: an id, for the next page)."""
        found, total = g.search(model=model, favourite=favourite, collection=collection, limit=limit, before=before)
        return {"images": [public_image(r) for r in found], "total": total, "models": g.models(),
                "collections": g.collections()}

    @app.get("/api/gallery/{image_id}")
    def image(image_id: IdPath) -> dict[str, Any]:
        """One image's record: model, seed, settings (the request that remakes it), provenance, collections."""
        return {**public_image(g.get(image_id)), "collections": g.collections_of(image_id)}

    @app.get("/api/gallery/{image_id}/image.png", responses={200: {"content": {"image/png": {}}}})
    def image_file(image_id: IdPath) -> Response:
        """The image as it was made (its metadata; the watermark from 64 px up)."""
        return Response(g.png(g.get(image_id)), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400, immutable"})

    @app.post("/api/gallery/{image_id}/favourite")
    def favourite(image_id: IdPath, req: Favourite) -> dict[str, Any]:
        return public_image(g.set_favourite(image_id, req.favourite))

    @app.post("/api/gallery/download", responses={200: {"content": {"application/zip": {}}}})
    def download(req: Selection) -> Response:
        """A zip of the selected images: PNGs with their provenance metadata and watermark, a JSON record
        beside each, and manifest.json."""
        buf = io.BytesIO()
        n = g.export_zip(req.ids, buf)
        return Response(buf.getvalue(), media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="atelier-gallery-{n}-images.zip"'})

    @app.get("/api/collections")
    def list_collections() -> dict[str, Any]:
        return {"collections": g.collections()}

    @app.post("/api/collections", status_code=201)
    def create_collection(req: NewCollection) -> dict[str, Any]:
        return g.create_collection(req.name)

    @app.delete("/api/collections/{collection_id}")
    def delete_collection(collection_id: IdPath) -> dict[str, Any]:
        g.delete_collection(collection_id)
        return {"deleted": collection_id}

    @app.post("/api/collections/{collection_id}/images")
    def add_images(collection_id: IdPath, req: Selection) -> dict[str, Any]:
        return {"added": g.add_to_collection(collection_id, req.ids), **g.collection(collection_id)}

    @app.delete("/api/collections/{collection_id}/images/{image_id}")
    def remove_image(collection_id: IdPath, image_id: IdPath) -> dict[str, Any]:
        g.remove_from_collection(collection_id, image_id)
        return {"removed": image_id}
