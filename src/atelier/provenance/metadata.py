"""atelier's metadata: build it (PNG iTXt / XMP fields), read it back, the fields of model-made images, and the
run a watermark's model id points to.

Every image carries PNG iTXt chunks (or XMP for JPEG/WebP) stating that it was made by a trained algorithm, using
the IPTC digital source type vocabulary, plus atelier's version, the time and the workflow's own fields (run, step,
seed...).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape, unescape

from PIL import Image

from atelier.provenance.watermark.payload import model_id_hash
from atelier.utils import sha256_file
from atelier.version import __version__

# For images atelier writes that are not generated (e.g. a grid of dataset examples).
COMPOSITE_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/composite"

__all__ = [
    "COMPOSITE_SOURCE_TYPE",
    "DIGITAL_SOURCE_TYPE",
    "PREFIX",
    "build_metadata",
    "log_no_metadata",
    "match_run",
    "model_id",
    "model_metadata",
    "read_metadata",
    "weights_sha256",
    "xmp_packet",
]

# IPTC NewsCodes: "trainedAlgorithmicMedia" = created by a model trained on sampled content.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PREFIX = "atelier:"


def build_metadata(fields: Mapping[str, object]) -> dict[str, str]:
    meta = {
        # Callers writing real (not generated) pixels, such as dataset previews, pass their own type.
        "DigitalSourceType": str(fields.get("DigitalSourceType", DIGITAL_SOURCE_TYPE)),
        f"{PREFIX}version": __version__,
        f"{PREFIX}created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    for key, value in fields.items():
        if key == "DigitalSourceType":
            continue
        meta[key if ":" in key else f"{PREFIX}{key}"] = str(value)
    return meta


def xmp_packet(meta: Mapping[str, str]) -> str:
    """An XMP packet carrying the IPTC digital source type and atelier's fields."""
    fields = "".join(
        f"<atelier:{escape(k.split(':', 1)[1])}>{escape(v)}</atelier:{escape(k.split(':', 1)[1])}>"
        for k, v in meta.items()
        if k.startswith(PREFIX)
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:atelier="https://github.com/atelier-gen/atelier/ns/1.0/">'
        f"<Iptc4xmpExt:DigitalSourceType>{escape(meta.get('DigitalSourceType', DIGITAL_SOURCE_TYPE))}"
        "</Iptc4xmpExt:DigitalSourceType>"
        f"{fields}</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )


def model_id(fields: Mapping[str, object]) -> str:
    """The id the watermark payload is derived from: ``model_id``, else the run name, else the model name."""
    for key in ("model_id", "run", "model"):
        if fields.get(key):
            return str(fields[key])
    return "atelier"


def _parse_xmp(xmp: str) -> dict[str, str]:
    meta = {}
    found = re.search(r"<Iptc4xmpExt:DigitalSourceType>(.*?)</Iptc4xmpExt:DigitalSourceType>", xmp, re.S)
    if found:
        meta["DigitalSourceType"] = unescape(found.group(1))
    for key, value in re.findall(r"<atelier:([\w.-]+)>(.*?)</atelier:\1>", xmp, re.S):
        meta[f"{PREFIX}{key}"] = unescape(value)
    return meta


def read_metadata(path: str | Path) -> dict[str, str]:
    """atelier's metadata in an image: PNG text chunks, else the XMP packet (JPEG/WebP); empty when none."""
    with Image.open(path) as img:
        text = dict(getattr(img, "text", None) or {})
        xmp = img.info.get("xmp") or text.get("XML:com.adobe.xmp") or b""
    meta = {k: v for k, v in text.items() if k != "XML:com.adobe.xmp"}
    if not meta and xmp:
        meta = _parse_xmp(xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp))
    return meta


def model_metadata(run_dir: str | Path | None, step: int, sha256: str | None, **fields: object) -> dict[str, object]:
    """The fields every image made by a trained model carries: workflow, run, step and its checkpoint's
    ``weights_sha256`` (see :func:`weights_sha256`), then the workflow's own ``fields``.

    The one helper behind ``Generator``, ``Translator`` and ``StyleModel``'s ``metadata()``.
    """
    meta: dict[str, object] = {"workflow": fields.pop("workflow", "sample"),
                               "run": Path(run_dir).name if run_dir else "", "step": step}
    if sha256:
        meta["weights_sha256"] = sha256
    return {**meta, **fields}


def weights_sha256(path: str | Path | None) -> str | None:
    """sha256 of a checkpoint file (None for None), hashed once per (path, size, mtime). Models take it when
    they are loaded: the file may be pruned later while a server keeps the model."""
    if path is None:
        return None
    st = Path(path).stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def log_no_metadata(run_dir: str | Path, step: int, outputs: list[Path], n: int, workflow: str = "sample") -> None:
    """Record in the run's metrics.jsonl that images were written without metadata (the issue asks for it):
    one ``{"event": "no-metadata", "workflow": ..., "images": n, "outputs": [...]}`` line per command."""
    row = {"step": step, "event": "no-metadata", "workflow": workflow, "images": n,
           "outputs": [str(p) for p in outputs], "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def match_run(id32: int, runs_dir: str | Path = "runs") -> str | None:
    """The local run folder whose name hashes to the watermark's model id, if there is one."""
    root = Path(runs_dir)
    if not root.is_dir():
        return None
    for run in sorted(p for p in root.iterdir() if (p / "config.yaml").is_file()):
        if model_id_hash(run.name) == id32:
            return str(run)
    return None
