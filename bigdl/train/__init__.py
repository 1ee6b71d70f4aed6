"""Incremental PyTorch training from a store: :class:`Trainer`, checkpoints."""

from bigdl.train._trainer import EVENT_TOPIC, Trainer

__all__ = ["Trainer", "EVENT_TOPIC"]
