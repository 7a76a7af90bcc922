from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from atelier.errors import ImageError
from atelier.imageio import save_image
from atelier.images import load_image, make_grid
from atelier.provenance import DIGITAL_SOURCE_TYPE, read_metadata


def test_grid_layout_and_value_mapping():
    x = torch.full((5, 1, 4, 4), -1.0)
    x[1] = 1.0
    grid = make_grid(x, nrow=3, pad=1)
    assert grid.size == (3 * 5 + 1, 2 * 5 + 1)
    arr = np.asarray(grid)
    assert arr[1, 1] == 0 and arr[1, 6] == 255  # first image black, second white
    assert arr[0, 0] == 32  # padding


def test_save_png_carries_ai_metadata_and_is_atomic(tmp_path):
    img = Image.new("RGB", (8, 8), (10, 20, 30))
    out = save_image(img, tmp_path / "a.png", {"run": "r1", "seed": 3})
    meta = read_metadata(str(out))
    assert meta["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert meta["atelier:run"] == "r1" and meta["atelier:seed"] == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


def test_save_jpeg_has_xmp(tmp_path):
    save_image(np.zeros((8, 8, 3), np.uint8), tmp_path / "a.jpg", {"run": "r"})
    with Image.open(tmp_path / "a.jpg") as im:
        xmp = im.info.get("xmp", b"")
    assert b"trainedAlgorithmicMedia" in xmp and b"<atelier:run>r</atelier:run>" in xmp


def test_unknown_output_format_is_refused(tmp_path):
    with pytest.raises(ImageError, match="use a .png"):
        save_image(Image.new("L", (4, 4)), tmp_path / "a.gif")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_every_mode_converts(tmp_path, mode):
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    path = tmp_path / f"x.{fmt.lower()}"
    img = Image.new(mode, (20, 10))
    if mode == "I;16":
        img = Image.fromarray(np.full((10, 20), 40000, np.uint16))
    img.save(path, format=fmt)
    rgb = load_image(path, channels=3, resolution=8)
    gray = load_image(path, channels=1)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert gray.shape == (10, 20, 1)
    if mode == "I;16":
        assert abs(int(gray[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1  # scaled, not clipped to 255


def test_corrupt_and_huge_images_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageError, match="bad.png is not a readable image"):
        load_image(bad)
    with pytest.raises(ImageError, match="image not found"):
        load_image(tmp_path / "missing.png")
    big = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(big)
    with pytest.raises(ImageError, match="pixels; the limit is"):
        load_image(big, max_pixels=1000)
