"""The studio's database: training jobs and the workers that run them, datasets, the gallery of generated
images, collections and users. SQLAlchemy Core, so one schema serves SQLite and a server database alike.

SQLite is the default (one file beside the runs, no server to run). It is opened in WAL mode, so the web
server reads while a worker writes, with a busy timeout instead of "database is locked" errors; in WAL mode
with ``synchronous=NORMAL`` a committed transaction survives a killed process (only a power cut may lose the
last few). A team points every server and worker at one server database instead (e.g.
``postgresql+psycopg://atelier@db/atelier``; any SQLAlchemy URL whose driver is installed).

The schema is created on first use and its version kept in ``meta``; ``docs/studio.md`` shows it as a table.
Times are UNIX seconds (float), JSON columns hold dicts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from atelier.errors import AtelierError

__all__ = ["SCHEMA_VERSION", "Conflict", "NotFound", "collection_images", "collections", "connect", "datasets",
           "default_url", "image_files", "images", "jobs", "meta", "metadata", "now", "row_dict", "users", "workers"]

SCHEMA_VERSION = 1


class NotFound(AtelierError):
    """A job, dataset, image or collection that does not exist (the studio answers 404)."""


class Conflict(AtelierError):
    """A request that the current state does not allow (stop a finished job, a name already taken: 409)."""


metadata = MetaData()

meta = Table("meta", metadata,
             Column("key", String(64), primary_key=True),
             Column("value", Text, nullable=False))

workers = Table(
    "workers", metadata,
    Column("id", String(36), primary_key=True),          # uuid4 of one `atelier worker` process
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("max_jobs", Integer, nullable=False),
    Column("state", String(16), nullable=False),          # running | stopped | gone (its heartbeat stopped)
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),             # heartbeat
)

datasets = Table(
    "datasets", metadata,
    Column("id", String(32), primary_key=True),           # uuid4 hex: never a path component from a client
    Column("name", String(200), nullable=False),
    Column("path", Text, nullable=False),                 # the folder on the server
    Column("origin", String(16), nullable=False),         # upload | folder
    Column("report", JSON, nullable=False),               # atelier.api.describe_data, as a dict
    Column("recipe", JSON, nullable=False),               # {"overrides": {...}, "reasons": [...]}
    Column("user", String(64)),
    Column("created_at", Float, nullable=False),
)

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),   # the run folder's name
    Column("run_dir", Text, nullable=False),
    Column("dataset_id", String(32), ForeignKey("datasets.id")),
    Column("config", JSON, nullable=False),               # the resolved run config (atelier.config.RunConfig)
    Column("budget", JSON, nullable=False),               # {"minutes": 5} | {"images": 200000} | {"steps": 500}
    Column("state", String(16), nullable=False, index=True),
    Column("step", Integer, nullable=False, default=0),   # the step reached (from the run's metrics)
    Column("checkpoint_step", Integer),                   # the step a resume starts from
    Column("kimg", Float, nullable=False, default=0.0),
    Column("img_per_s", Float),
    Column("message", Text),                              # what happened last, in words (why it failed)
    Column("worker_id", String(36)),
    Column("pid", Integer),                               # the training process, on the worker's host
    Column("client_key", String(64), unique=True),        # a client's retry of the same submission
    Column("user", String(64)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("updated_at", Float, nullable=False),
)

images = Table(
    "images", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False, unique=True),    # sha256 of what made it: model, weights, request
    Column("model", String(200), nullable=False, index=True),  # the run's name
    Column("kind", String(16), nullable=False),                # generator | translator | stylizer
    Column("workflow", String(32), nullable=False),            # studio-generate, studio-variations, ...
    Column("seed", Integer),
    Column("step", Integer),
    Column("weights_sha256", String(64)),
    Column("settings", JSON, nullable=False),                  # the request that remakes it, and its index
    Column("provenance", JSON, nullable=False),                # the metadata written into the PNG
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("favourite", Boolean, nullable=False, default=False, index=True),
    Column("user", String(64)),
    Column("created_at", Float, nullable=False),
)

image_files = Table(
    "image_files", metadata,                                   # the PNG bytes, apart so listings stay light
    Column("key", String(64), ForeignKey("images.key", ondelete="CASCADE"), primary_key=True),
    Column("png", LargeBinary, nullable=False),
)

collections = Table(
    "collections", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

collection_images = Table(
    "collection_images", metadata,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("added_at", Float, nullable=False),
)

users = Table(
    "users", metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),        # scrypt, see atelier.api.users
    Column("created_at", Float, nullable=False),
)


def now() -> float:
    return time.time()


def default_url(home: str | Path) -> str:
    """The default database: ``studio.db`` (SQLite) in the studio's folder."""
    return f"sqlite:///{Path(home).resolve() / 'studio.db'}"


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")       # readers never wait for the writer
    cur.execute("PRAGMA synchronous=NORMAL")     # durable against a killed process in WAL mode
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")     # wait for another process's write instead of failing
    cur.close()


_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def connect(url: str) -> Engine:
    """The engine of ``url`` (one per URL and process), with the schema created if it is missing."""
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is not None:
            return engine
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                   pool_size=8, max_overflow=32, pool_timeout=60)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _create(engine)
        _ENGINES[url] = engine
        return engine


def _create(engine: Engine) -> None:
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            with engine.begin() as conn:
                found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
                if found is None:
                    conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                elif int(found) > SCHEMA_VERSION:
                    raise AtelierError(f"the studio database was written by a newer atelier (schema {found}, this "
                                       f"version reads {SCHEMA_VERSION}); upgrade atelier")
            return
        except (OperationalError, IntegrityError):
            # Two processes creating the schema at once (a server and its worker starting together).
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)
