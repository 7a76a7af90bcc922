"""Trainers, EMA, checkpointing, logging and the device/precision glue."""

from __future__ import annotations

from atelier.training.gan import GANTrainer, TrainResult

__all__ = ["GANTrainer", "TrainResult"]
