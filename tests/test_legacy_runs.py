"""Run folders written before the architecture change still load and give the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import atelier

LEGACY = Path(__file__).parent / "fixtures" / "legacy-runs"
EXPECTED = np.load(LEGACY / "expected.npz")
PHOTO = Path(__file__).parent / "fixtures" / "chelsea-40x32.png"


@pytest.mark.parametrize("name", ["dcgan", "cgan", "vae"])
def test_generators_sample_the_same_images(name):
    images = atelier.load(LEGACY / name).sample(6, seed=3).numpy()
    np.testing.assert_array_equal(images, EXPECTED[name])


def test_raw_generator_samples_the_same_images():
    np.testing.assert_array_equal(atelier.load(LEGACY / "dcgan", which="raw").sample(4, seed=1).numpy(),
                                  EXPECTED["dcgan_raw"])


@pytest.mark.parametrize("name", ["pix2pix", "style"])
def test_image_models_give_the_same_images(name):
    photo = Image.open(PHOTO).convert("RGB")
    out = np.asarray(atelier.load(LEGACY / name)(photo))
    # The style network runs in bf16 where the CPU has it natively, as it did when the fixture was made.
    np.testing.assert_array_equal(out, EXPECTED[name])
