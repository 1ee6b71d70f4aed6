"""Checkpoints: one file per epoch under a local path or an fsspec URL."""

from __future__ import annotations

import io
import re

import torch

__all__ = ["checkpoint_path", "save_checkpoint", "latest_checkpoint", "load_checkpoint"]

NAME = "epoch-{epoch:05d}.pt"
PATTERN = re.compile(r"epoch-(\d{5})\.pt$")


def _fs(directory: str):
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(directory))
    return fs, path.rstrip("/")


def checkpoint_path(directory: str, epoch: int) -> str:
    """Where the checkpoint of ``epoch`` goes (0-based epoch)."""
    fs, root = _fs(directory)
    return f"{root}/{NAME.format(epoch=epoch)}"


def save_checkpoint(directory: str, epoch: int, state: dict) -> str:
    """Write ``state`` for ``epoch`` atomically (temporary name, then move)."""
    fs, root = _fs(directory)
    fs.makedirs(root, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    final = checkpoint_path(directory, epoch)
    temporary = final + ".tmp"
    with fs.open(temporary, "wb") as handle:
        handle.write(buffer.getvalue())
    fs.mv(temporary, final)
    return final


def latest_checkpoint(directory: str) -> str | None:
    """The newest complete checkpoint in ``directory``, or None."""
    fs, root = _fs(directory)
    if not fs.exists(root):
        return None
    found = [(int(match.group(1)), path) for path in fs.ls(root, detail=False)
             if (match := PATTERN.search(path))]
    return max(found)[1] if found else None


def load_checkpoint(path: str) -> dict:
    fs, resolved = _fs(path)
    with fs.open(resolved, "rb") as handle:
        return torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=False)
