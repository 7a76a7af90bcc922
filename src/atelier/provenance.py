"""Provenance written into every image atelier saves.

Every image carries PNG iTXt chunks (or XMP for JPEG/WebP) stating that it was made by a trained
algorithm, using the IPTC digital source type vocabulary, plus atelier's version, the time and the
workflow's own fields (run, step, seed...). :func:`atelier.imageio.save_image` is the only caller.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from xml.sax.saxutils import escape

# For images atelier writes that are not generated (e.g. a grid of dataset examples).
COMPOSITE_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/composite"

__all__ = ["COMPOSITE_SOURCE_TYPE", "DIGITAL_SOURCE_TYPE", "build_metadata", "read_metadata", "xmp_packet"]

# IPTC NewsCodes: "trainedAlgorithmicMedia" = created by a model trained on sampled content.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PREFIX = "atelier:"


def build_metadata(fields: Mapping[str, object]) -> dict[str, str]:
    from atelier import __version__

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


def read_metadata(path: str) -> dict[str, str]:
    """The text metadata of a PNG written by atelier (empty when there is none)."""
    from PIL import Image

    with Image.open(path) as img:
        text = getattr(img, "text", None) or {}
        return {k: v for k, v in text.items() if k != "XML:com.adobe.xmp"}
