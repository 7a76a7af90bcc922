"""C2PA manifests: sign encoded image bytes as the last step of writing, read a manifest's state back (optional
extra ``atelier[c2pa]``)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atelier.errors import AtelierError, ConfigError
from atelier.provenance.metadata import DIGITAL_SOURCE_TYPE, PREFIX
from atelier.version import __version__

__all__ = ["C2PA_INSTALL", "C2paCredentials", "c2pa_credentials_from_env", "read_c2pa", "sign_c2pa"]

C2PA_INSTALL = "C2PA support needs the c2pa-python package; install with: pip install 'atelier[c2pa]'"
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _require_c2pa():
    try:
        import c2pa  # optional extra atelier[c2pa]
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
