"""Training tasks: one file per family, each a :class:`~atelier.training.task.Task` for the one loop."""
