"""Incremental PyTorch training from a store: :class:`Trainer`, its :class:`TrainingLoop` and callbacks (TensorBoard, MLflow)."""

from bigdl.train._loop import Callback, TrainingLoop
from bigdl.train._quantile import QuantileLoss
from bigdl.train._trackers import MLflowLogger, TensorBoardLogger
from bigdl.train._trainer import EVENT_TOPIC, Trainer

__all__ = ["Trainer", "TrainingLoop", "Callback", "EVENT_TOPIC", "TensorBoardLogger", "MLflowLogger", "QuantileLoss"]
