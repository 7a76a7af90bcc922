"""Trained models loaded from run folders, on one base: a generator, a translator, a stylizer, a segmenter.

:func:`atelier.load` picks the class from the run's family (:mod:`atelier.families`); the studio, export,
evaluate and synth use the same objects.
"""

from atelier.loaded.base import LoadedModel, read_slot
from atelier.loaded.generator import Generator
from atelier.loaded.segmenter import Segmenter
from atelier.loaded.stylizer import Stylizer
from atelier.loaded.translator import Translator

__all__ = ["Generator", "LoadedModel", "Segmenter", "Stylizer", "Translator", "read_slot"]
