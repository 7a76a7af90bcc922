"""The one training loop and the task protocol every model family plugs into."""

from atelier.training.loop import Trainer
from atelier.training.result import TrainResult
from atelier.training.task import Context, Grid, Task

__all__ = ["Context", "Grid", "Task", "TrainResult", "Trainer"]
