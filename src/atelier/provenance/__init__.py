"""Provenance written into every image atelier saves, and read back by ``atelier verify``.

Every image carries PNG iTXt chunks (or XMP for JPEG/WebP) stating that it was made by a trained algorithm, using
the IPTC digital source type vocabulary, plus atelier's version, the time and the workflow's own fields (run,
step, seed...) (:mod:`.metadata`); generated images also carry the invisible watermark of :mod:`.watermark`, and,
when a certificate is configured, a signed C2PA manifest (:mod:`.c2pa`, optional extra ``atelier[c2pa]``).
:func:`atelier.imageio.save_image` is the only writer; :func:`verify_image` (:mod:`.verify`) reads all three back.

Layering: this package may import ``atelier.images``, ``atelier.errors``, ``atelier.utils`` and
``atelier.version``; never ``atelier.imageio`` (which imports it) nor the package top.
"""

from __future__ import annotations

from atelier.provenance.c2pa import C2paCredentials, c2pa_credentials_from_env, read_c2pa, sign_c2pa
from atelier.provenance.metadata import (
    COMPOSITE_SOURCE_TYPE,
    DIGITAL_SOURCE_TYPE,
    PREFIX,
    build_metadata,
    log_no_metadata,
    match_run,
    model_id,
    model_metadata,
    read_metadata,
    weights_sha256,
    xmp_packet,
)
from atelier.provenance.verify import detect_image, verify_image

__all__ = [
    "COMPOSITE_SOURCE_TYPE",
    "DIGITAL_SOURCE_TYPE",
    "PREFIX",
    "C2paCredentials",
    "build_metadata",
    "detect_image",
    "c2pa_credentials_from_env",
    "log_no_metadata",
    "match_run",
    "model_id",
    "model_metadata",
    "read_c2pa",
    "read_metadata",
    "sign_c2pa",
    "verify_image",
    "weights_sha256",
    "xmp_packet",
]
