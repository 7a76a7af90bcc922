"""Provenance written into every image atelier saves, and read back by ``atelier verify``.

Every image carries PNG iTXt chunks (or XMP for JPEG/WebP) stating that it was made by a trained
algorithm, using the IPTC digital source type vocabulary, plus atelier's version, the time and the
workflow's own fields (run, step, seed...); generated images also carry the invisible watermark of
:mod:`atelier.watermark`, and, when a certificate is configured, a signed C2PA manifest (optional extra
``atelier[c2pa]``). :func:`atelier.imageio.save_image` is the only writer; :func:`verify_image` reads
all three back.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, unescape

from atelier.errors import AtelierError, ConfigError, ImageError

# For images atelier writes that are not generated (e.g. a grid of dataset examples).
COMPOSITE_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/composite"

__all__ = [
    "COMPOSITE_SOURCE_TYPE",
    "DIGITAL_SOURCE_TYPE",
    "C2paCredentials",
    "build_metadata",
    "c2pa_credentials_from_env",
    "log_no_metadata",
    "match_run",
    "model_id",
    "model_metadata",
    "weights_sha256",
    "read_c2pa",
    "read_metadata",
    "sign_c2pa",
    "verify_image",
    "xmp_packet",
]

# IPTC NewsCodes: "trainedAlgorithmicMedia" = created by a model trained on sampled content.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PREFIX = "atelier:"


def build_metadata(fields: Mapping[str, object]) -> dict[str, str]:
    from atelier.version import __version__

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
    from PIL import Image

    with Image.open(path) as img:
        text = dict(getattr(img, "text", None) or {})
        xmp = img.info.get("xmp") or text.get("XML:com.adobe.xmp") or b""
    meta = {k: v for k, v in text.items() if k != "XML:com.adobe.xmp"}
    if not meta and xmp:
        meta = _parse_xmp(xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp))
    return meta


# ------------------------------------------------------------------------------------------------ C2PA
C2PA_INSTALL = "C2PA support needs the c2pa-python package; install with: pip install 'atelier[c2pa]'"
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _require_c2pa():
    try:
        import c2pa
    except ImportError:
        raise AtelierError(C2PA_INSTALL) from None
    return c2pa


class C2paCredentials:
    """A signing certificate chain (PEM, leaf first) and its private key (PEM), read from files."""

    def __init__(self, cert: str | Path, key: str | Path, alg: str = "es256", tsa_url: str | None = None) -> None:
        self.cert, self.key = Path(cert), Path(key)
        for label, path in (("certificate", self.cert), ("private key", self.key)):
            if not path.is_file():
                raise ConfigError(f"C2PA {label} not found: {path} (set ATELIER_C2PA_CERT and ATELIER_C2PA_KEY "
                                  "to PEM files)")
        self.alg = alg.lower()
        self.tsa_url = tsa_url


def c2pa_credentials_from_env() -> C2paCredentials | None:
    """Credentials from ``ATELIER_C2PA_CERT`` / ``ATELIER_C2PA_KEY`` (and optional ``_ALG``, ``_TSA_URL``)."""
    cert, key = os.environ.get("ATELIER_C2PA_CERT"), os.environ.get("ATELIER_C2PA_KEY")
    if not cert and not key:
        return None
    if not (cert and key):
        raise ConfigError("set both ATELIER_C2PA_CERT and ATELIER_C2PA_KEY (PEM files) to sign C2PA manifests")
    return C2paCredentials(cert, key, os.environ.get("ATELIER_C2PA_ALG", "es256"),
                           os.environ.get("ATELIER_C2PA_TSA_URL") or None)


def sign_c2pa(data: bytes, fmt: str, meta: Mapping[str, str], creds: C2paCredentials, title: str) -> bytes:
    """Embed a signed C2PA manifest (``c2pa.created``, IPTC digital source type) into encoded image bytes.

    This is the last step of writing an image: any later change of pixels or metadata breaks the signature.
    """
    c2pa = _require_c2pa()
    from atelier.version import __version__

    action = {"action": "c2pa.created", "digitalSourceType": meta.get("DigitalSourceType", DIGITAL_SOURCE_TYPE),
              "softwareAgent": {"name": "atelier", "version": __version__},
              "parameters": {k.split(":", 1)[1]: v for k, v in meta.items() if k.startswith(PREFIX)}}
    manifest = {"claim_generator_info": [{"name": "atelier", "version": __version__}], "title": title,
                "format": MIME[fmt], "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}]}
    try:
        info = c2pa.C2paSignerInfo(creds.alg, creds.cert.read_bytes(), creds.key.read_bytes(), creds.tsa_url)
        # No thumbnail: it would add tens of KB to every image (training grids included).
        context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest, context=context) as builder:
            out = io.BytesIO()
            builder.sign(signer, MIME[fmt], io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise ConfigError(f"C2PA signing failed with {creds.cert}: {exc}") from None
    return out.getvalue()


def read_c2pa(path: str | Path, trust_anchors: str | Path | None = None) -> dict[str, Any]:
    """C2PA state of an image: ``status`` is valid / trusted / invalid / absent, or unavailable (no c2pa)."""
    try:
        c2pa = _require_c2pa()
    except AtelierError:
        return {"status": "unavailable", "detail": C2PA_INSTALL}
    settings: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}
    if trust_anchors:
        settings |= {"verify": {"verify_trust": True}, "trust": {"trust_anchors": Path(trust_anchors).read_text()}}
    try:
        context = c2pa.Context(c2pa.Settings.from_dict(settings))
        reader = c2pa.Reader.try_create(str(path), context=context)
        if reader is None:
            return {"status": "absent"}
        with reader:
            state = (reader.get_validation_state() or "").lower()
            report = json.loads(reader.json())
    except c2pa.C2paError.NotSupported:
        return {"status": "absent", "detail": f"C2PA does not support {Path(path).suffix or 'this'} files"}
    except c2pa.C2paError as exc:
        return {"status": "invalid", "detail": str(exc)}
    active = report.get("manifests", {}).get(report.get("active_manifest", ""), {})
    # Without trust anchors, a self-managed certificate is expected to be "untrusted": not a failure.
    ignored = () if trust_anchors else ("signingCredential.untrusted",)
    errors = [s.get("code") for s in report.get("validation_status", []) or [] if s.get("code") not in ignored]
    status = "invalid" if errors else ("trusted" if state == "trusted" else "valid")
    actions = [a for x in active.get("assertions", []) if x.get("label", "").startswith("c2pa.actions")
               for a in x.get("data", {}).get("actions", [])]
    return {"status": status, "errors": errors, "claim_generator": [g.get("name") for g in
            active.get("claim_generator_info", [])], "actions": [a.get("action") for a in actions],
            "digital_source_type": next((a.get("digitalSourceType") for a in actions), None)}


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
    from atelier.utils import sha256_file

    return sha256_file(path)


def log_no_metadata(run_dir: str | Path, step: int, outputs: list[Path], n: int, workflow: str = "sample") -> None:
    """Record in the run's metrics.jsonl that images were written without metadata (the issue asks for it):
    one ``{"event": "no-metadata", "workflow": ..., "images": n, "outputs": [...]}`` line per command."""
    row = {"step": step, "event": "no-metadata", "workflow": workflow, "images": n,
           "outputs": [str(p) for p in outputs], "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------------------------- verify
def match_run(id32: int, runs_dir: str | Path = "runs") -> str | None:
    """The local run folder whose name hashes to the watermark's model id, if there is one."""
    from atelier.watermark import model_id_hash

    root = Path(runs_dir)
    if not root.is_dir():
        return None
    for run in sorted(p for p in root.iterdir() if (p / "config.yaml").is_file()):
        if model_id_hash(run.name) == id32:
            return str(run)
    return None


def verify_image(path: str | Path, runs_dir: str | Path = "runs",
                 trust_anchors: str | Path | None = None) -> dict[str, Any]:
    """Everything atelier can say about an image's origin; ``recognised`` is True when it is atelier's."""
    from atelier.images import load_image
    from atelier.watermark import MIN_SIZE, detect

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    pixels = load_image(path, channels=3, name=str(path))
    try:
        meta = read_metadata(path)
    except OSError:
        meta = {}
    found = detect(pixels)
    wm = found.to_dict()
    if found.id32 is not None:
        wm["run"] = match_run(found.id32, runs_dir)
        claimed = meta.get(f"{PREFIX}watermark")
        wm["matches_metadata"] = None if not claimed else claimed == f"{found.id32:08x}"
    if not found.detected and min(pixels.shape[:2]) < MIN_SIZE:  # (a marked 64 px image cropped can be found)
        wm["note"] = f"image smaller than {MIN_SIZE} px: atelier writes metadata only at this size"
    c2pa = read_c2pa(path, trust_anchors)
    ai_meta = meta.get("DigitalSourceType") == DIGITAL_SOURCE_TYPE and f"{PREFIX}version" in meta
    signed = c2pa["status"] in ("valid", "trusted") and "atelier" in c2pa.get("claim_generator", [])
    return {"image": str(path), "size": list(pixels.shape[1::-1]), "recognised": bool(found.detected or ai_meta
            or signed), "metadata": meta, "watermark": wm, "c2pa": c2pa}
