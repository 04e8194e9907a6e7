"""Training: the loop, EMA, learning-rate schedule, atomic checkpoints, data parallelism."""

from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from .loop import Trainer, TrainingError

__all__ = ["CheckpointError", "Trainer", "TrainingError", "latest_checkpoint", "load_checkpoint"]
