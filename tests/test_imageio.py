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


def _rgba_batch(n: int = 2, size: int = 64) -> torch.Tensor:
    """(N, 4, H, W) in [-1, 1]: colour noise, alpha 0 / partial / 1 in stripes."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 4, size, size, generator=g) * 2 - 1
    x[:, 3, :, : size // 3] = -1.0                      # fully transparent (colour still there, invisible)
    x[:, 3, :, size // 3 : 2 * size // 3] = 0.0         # half transparent
    x[:, 3, :, 2 * size // 3 :] = 1.0                   # opaque
    return x


@pytest.mark.parametrize("watermark", [False, True])
def test_rgba_tensor_and_array_round_trip_keep_alpha(tmp_path, watermark):
    from atelier.imageio import save_images
    from atelier.images import to_uint8_array

    x = _rgba_batch()
    want = to_uint8_array(x)                             # (N, H, W, 4) uint8
    paths = save_images(x, tmp_path / "t", watermark=watermark)
    save_image(want[1], tmp_path / "a.png", watermark=watermark)      # an (H, W, 4) array
    for path, expected in ((paths[0], want[0]), (paths[1], want[1]), (tmp_path / "a.png", want[1])):
        with Image.open(path) as im:
            assert im.mode == "RGBA"
            got = np.asarray(im)
        assert np.array_equal(got[..., 3], expected[..., 3])          # alpha exactly
        seen = expected[..., 3] > 0
        diff = np.abs(got[..., :3].astype(int) - expected[..., :3].astype(int))[seen]
        # Colour under alpha > 0: exact without the watermark; the watermark's small changes with it.
        assert diff.max() == 0 if not watermark else (diff.mean() < 3 and diff.max() <= 32)


def test_jpeg_of_rgba_composites_over_white_and_webp_keeps_alpha(tmp_path):
    img = np.zeros((16, 16, 4), np.uint8)
    img[..., 0] = 255                  # red everywhere, but ...
    img[:, :8, 3] = 0                  # ... left half transparent (must not show red)
    img[:, 8:, 3] = 255
    save_image(img, tmp_path / "a.jpg", watermark=False)
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.mode == "RGB"
        arr = np.asarray(im).astype(int)
    assert (arr[4:12, 1:6] > 240).all()                               # white, not red
    assert arr[8, 13, 0] > 230 and arr[8, 13, 1] < 30                 # red stays red
    save_image(img, tmp_path / "a.webp", watermark=False)
    with Image.open(tmp_path / "a.webp") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], img[..., 3])


def test_grid_shows_transparency_over_a_checkerboard():
    from atelier.images import CHECKER_COLOURS, checkerboard

    x = torch.zeros(2, 4, 16, 16, dtype=torch.uint8)
    x[1, 0] = 255
    x[1, 3, :8] = 255                  # second image: top half opaque red, bottom half transparent
    arr = np.asarray(make_grid(x, nrow=2, pad=1))
    assert arr.shape == (18, 35, 3)
    board = checkerboard(16, 16)
    assert set(np.unique(board)) == set(CHECKER_COLOURS) and board[0, 0, 0] != board[0, 2, 0]
    assert np.array_equal(arr[1:17, 1:17], board)                     # fully transparent: the checkerboard
    second = arr[1:17, 18:34]
    assert (second[:8] == [255, 0, 0]).all() and np.array_equal(second[8:], board[8:])
