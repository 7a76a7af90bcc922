"""The gallery: every image made through the studio, with what made it (model, weights, seed, settings) and its
provenance; favourites, collections, and a zip of a selection.

An image's identity is a hash of what made it (the model's run, its weights' sha256, the workflow and the
request that remakes exactly this image), not of its bytes (its metadata carries a time): the same image
asked for twice, or a request retried after a dropped connection, is one gallery entry. The PNG is stored in
the database with its record, in the same transaction (all the images of one request in one): a record never
lacks its image, a killed process leaves all of a request's images or none, and servers on several machines
share the gallery through the database alone. (Per image, a file write with its fsync measured ~7 ms here; a
row in a shared transaction, well under 1 ms.)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from atelier.api.studio_db import (
    Conflict,
    NotFound,
    collection_images,
    collections,
    connect,
    image_files,
    images,
    now,
    row_dict,
)
from atelier.errors import ConfigError
from atelier.imageio import encode_image

__all__ = ["EXPORT_SIDE", "MAX_EXPORT", "Gallery", "created_now", "image_key"]

# Images in a downloaded zip are enlarged (nearest neighbour, as the page's download) to at least this many
# pixels a side: large enough for the invisible watermark's tiled method (atelier.provenance.watermark.TILE_MIN_SIZE).
EXPORT_SIDE = 256
MAX_EXPORT = 500  # images in one zip
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def image_key(model: str, weights_sha256: str | None, workflow: str, settings: dict[str, Any]) -> str:
    """What makes an image, hashed: the same inputs give the same image, so they are one gallery entry."""
    blob = json.dumps({"model": model, "weights": weights_sha256, "workflow": workflow, "settings": settings},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def created_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Gallery:
    """The gallery of one studio database."""

    def __init__(self, db: str | Engine) -> None:
        self.engine = connect(db) if isinstance(db, str) else db

    # ------------------------------------------------------------------ adding
    def add(self, png: bytes, **record: Any) -> dict[str, Any]:
        """Keep one encoded PNG with its record (see :meth:`add_many`)."""
        return self.add_many([(png, record)])[0]

    def add_many(self, items: Sequence[tuple[bytes, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Keep encoded PNGs with their records (``model``, ``kind``, ``workflow``, ``settings``, ``provenance``
        and optionally ``seed``, ``step``, ``weights_sha256``, ``user``) in one transaction; returns the
        records (the existing one for an image already kept)."""
        rows: dict[str, tuple[bytes, dict[str, Any]]] = {}
        keys = []
        for png, rec in items:
            with Image.open(io.BytesIO(png)) as img:
                width, height = img.size
            key = image_key(rec["model"], rec.get("weights_sha256"), rec["workflow"], rec["settings"])
            keys.append(key)
            rows[key] = (png, {
                "key": key, "model": rec["model"], "kind": rec["kind"], "workflow": rec["workflow"],
                "seed": rec.get("seed"), "step": rec.get("step"), "weights_sha256": rec.get("weights_sha256"),
                "settings": rec["settings"], "provenance": _jsonable(rec["provenance"]), "width": width,
                "height": height, "favourite": False, "user": rec.get("user"), "created_at": now()})
        kept = self._by_keys(keys)
        new = {k: v for k, v in rows.items() if k not in kept}
        if new:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(images), [row for _, row in new.values()])
                    conn.execute(insert(image_files), [{"key": k, "png": png} for k, (png, _) in new.items()])
            except IntegrityError:
                # A concurrent request kept some of the same images first: the rest one by one.
                if len(new) > 1:
                    for png, row in new.values():
                        self.add_many([(png, row)])
            kept = self._by_keys(keys)
        return [kept[k] for k in keys]

    def _by_keys(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r.key: row_dict(r) for r in conn.execute(select(images).where(images.c.key.in_(set(keys))))}

    def png(self, record: dict[str, Any]) -> bytes:
        """The stored PNG of a record (its provenance metadata as made; the watermark from 64 px up)."""
        with self.engine.connect() as conn:
            data = conn.execute(select(image_files.c.png).where(image_files.c.key == record["key"])).scalar()
        if data is None:
            raise NotFound(f"image {record['id']} has no stored picture")
        return bytes(data)

    # ------------------------------------------------------------------ reading
    def get(self, image_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(images).where(images.c.id == image_id)).first()
        if row is None:
            raise NotFound(f"no image {image_id} in the gallery")
        return row_dict(row)

    def search(self, model: str | None = None, favourite: bool | None = None, collection: int | None = None,
             limit: int = 60, before: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Newest first; ``before``: an id, for the next page. Returns (records, total matching)."""
        query = select(images)
        counted = select(func.count()).select_from(images)
        conditions = []
        if model is not None:
            conditions.append(images.c.model == model)
        if favourite is not None:
            conditions.append(images.c.favourite == favourite)
        if collection is not None:
            self.collection(collection)
            conditions.append(images.c.id.in_(select(collection_images.c.image_id)
                                               .where(collection_images.c.collection_id == collection)))
        for c in conditions:
            query, counted = query.where(c), counted.where(c)
        if before is not None:
            query = query.where(images.c.id < before)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(images.c.id.desc()).limit(limit)).all()
            total = conn.execute(counted).scalar() or 0
        return [row_dict(r) for r in rows], int(total)

    def models(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(images.c.model).distinct().order_by(images.c.model))]

    # ------------------------------------------------------------------ curating
    def set_favourite(self, image_id: int, favourite: bool) -> dict[str, Any]:
        self.get(image_id)
        with self.engine.begin() as conn:
            conn.execute(update(images).where(images.c.id == image_id).values(favourite=favourite))
        return self.get(image_id)

    def collection(self, collection_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(collections).where(collections.c.id == collection_id)).first()
        if row is None:
            raise NotFound(f"no collection {collection_id}")
        return row_dict(row)

    def collections(self) -> list[dict[str, Any]]:
        count = (select(func.count()).select_from(collection_images)
                 .where(collection_images.c.collection_id == collections.c.id).scalar_subquery())
        with self.engine.connect() as conn:
            rows = conn.execute(select(collections, count.label("size")).order_by(collections.c.name)).all()
        return [row_dict(r) for r in rows]

    def create_collection(self, name: str) -> dict[str, Any]:
        name = name.strip()
        if not name or len(name) > 100:
            raise ConfigError("a collection needs a name of 1 to 100 characters")
        try:
            with self.engine.begin() as conn:
                key = conn.execute(insert(collections).values(name=name, created_at=now())).inserted_primary_key
                assert key is not None
                new_id = key[0]
        except IntegrityError:
            raise Conflict(f"a collection named {name!r} already exists") from None
        return self.collection(int(new_id))

    def delete_collection(self, collection_id: int) -> None:
        self.collection(collection_id)
        with self.engine.begin() as conn:
            conn.execute(delete(collection_images).where(collection_images.c.collection_id == collection_id))
            conn.execute(delete(collections).where(collections.c.id == collection_id))

    def add_to_collection(self, collection_id: int, image_ids: Sequence[int]) -> int:
        """Add images (already-present ones are skipped); returns how many were added."""
        self.collection(collection_id)
        for i in image_ids:
            self.get(i)
        with self.engine.connect() as conn:
            have = {r[0] for r in conn.execute(select(collection_images.c.image_id)
                                               .where(collection_images.c.collection_id == collection_id))}
        new = [i for i in dict.fromkeys(image_ids) if i not in have]
        if new:
            t = now()
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(collection_images),
                                 [{"collection_id": collection_id, "image_id": i, "added_at": t} for i in new])
            except IntegrityError:  # a concurrent add of the same image: add them one by one
                return sum(self.add_to_collection(collection_id, [i]) for i in new)
        return len(new)

    def remove_from_collection(self, collection_id: int, image_id: int) -> None:
        self.collection(collection_id)
        with self.engine.begin() as conn:
            conn.execute(delete(collection_images).where(collection_images.c.collection_id == collection_id,
                                                         collection_images.c.image_id == image_id))

    def collections_of(self, image_id: int) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(
                select(collections.c.name).join(collection_images,
                                                collection_images.c.collection_id == collections.c.id)
                .where(collection_images.c.image_id == image_id).order_by(collections.c.name))]

    # ------------------------------------------------------------------ sharing
    def export_zip(self, image_ids: Sequence[int], out: IO[bytes], side: int = EXPORT_SIDE) -> int:
        """Write a zip of the images: each as a PNG enlarged (nearest neighbour) to at least ``side`` pixels,
        re-encoded with its provenance metadata and the invisible watermark, beside a ``.json`` of its record;
        and ``manifest.json`` listing them all. Returns how many images it holds."""
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            raise ConfigError("select at least one image to download")
        if len(ids) > MAX_EXPORT:
            raise ConfigError(f"{len(ids)} images selected; a download holds at most {MAX_EXPORT}")
        records = [self.get(i) for i in ids]
        manifest = []
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rec in records:
                with Image.open(io.BytesIO(self.png(rec))) as img:
                    pixels = np.asarray(img)
                scale = max(1, min(16, math.ceil(side / max(1, min(rec["width"], rec["height"])))))
                big = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
                fields = {**rec["provenance"], **({"scale": scale} if scale > 1 else {}), "gallery_id": rec["id"]}
                stem = f"{rec['id']:06d}-{_SAFE.sub('_', rec['model'])[:60]}" + (
                    f"-seed{rec['seed']}" if rec["seed"] is not None else "")
                zf.writestr(f"{stem}.png", encode_image(big, "png", fields))
                entry = {**{k: v for k, v in rec.items() if k != "key"}, "file": f"{stem}.png", "scale": scale,
                         "collections": self.collections_of(rec["id"])}
                zf.writestr(f"{stem}.json", json.dumps(entry, indent=2, sort_keys=True))
                manifest.append(entry)
            zf.writestr("manifest.json", json.dumps({"exported_at": created_now(), "images": manifest}, indent=2))
        return len(records)


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v)) for k, v in fields.items()}
