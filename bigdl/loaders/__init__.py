"""Data loaders from a store into frameworks (PyTorch: :class:`bigdl.loaders.torch.ChunkLoader`)."""

__all__ = ["ChunkLoader", "Augment", "release_buffers"]

from bigdl.loaders._buffers import release_buffers


def __getattr__(name):
    # Import torch only when the loader is asked for.
    if name == "ChunkLoader":
        from bigdl.loaders.torch import ChunkLoader

        return ChunkLoader
    if name == "Augment":
        from bigdl.loaders._augment import Augment

        return Augment
    raise AttributeError(name)
