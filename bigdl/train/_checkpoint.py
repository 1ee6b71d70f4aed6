"""Checkpoints: one file per epoch under a local path or an fsspec URL, and the identity of the run that wrote it.

Each ``epoch-NNNNN.pt`` holds the model, optimizer, RNG and loader state and
the history; ``epoch-NNNNN-step-NNNNNNNN.pt`` is one taken within an epoch
(``Trainer(checkpoint_every=...)``), after that many steps of it, and only the
newest of those is kept (a run removes its own older ones, named by their
sidecars, never another run's).  It and is loaded with ``torch.load(weights_only=True)``, which
runs no code from the file: only tensors, dicts, lists, numbers and strings
come back.  Beside it, ``epoch-NNNNN.json`` (a sidecar, written after the
``.pt``) records the run id and the run's identity (model architecture,
optimizer, store, seed, batch size, class weights), so deciding whether to continue from a
checkpoint reads no pickle at all.  A checkpoint is only unpickled to resume:
with ``fit(resume=True)``, or by a rescheduled attempt of the same run.
"""

from __future__ import annotations

import io
import json
import os
import re

import torch

from bigdl.errors import CheckpointError

__all__ = ["checkpoint_path", "save_checkpoint", "latest_checkpoint", "load_checkpoint", "read_sidecar",
           "run_identity", "identity_differences", "checkpoint_to_resume"]

NAME = "epoch-{epoch:05d}.pt"
STEP_NAME = "epoch-{epoch:05d}-step-{step:08d}.pt"
PATTERN = re.compile(r"epoch-(\d{5})(?:-step-(\d{8}))?\.pt$")
# What every checkpoint holds; a file without one of them is not a bigdl checkpoint.
STATE_KEYS = ("epoch", "model", "optimizer", "torch_rng", "loader", "history")


def _fs(directory: str):
    from bigdl.store._location import filesystem

    fs, path = filesystem(str(directory))
    return fs, path.rstrip("/")


def checkpoint_path(directory: str, epoch: int, step: int | None = None) -> str:
    """Where the checkpoint of ``epoch`` goes (0-based epoch), or of its first ``step`` steps."""
    fs, root = _fs(directory)
    name = NAME.format(epoch=epoch) if step is None else STEP_NAME.format(epoch=epoch, step=step)
    return _full(fs, f"{root}/{name}")


def _full(fs, path: str) -> str:
    """A path of ``fs`` as a location that names its file system again (the URL for object storage)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return path if {"file", "local"} & set(protocols) else fs.unstrip_protocol(path)


def sidecar_path(checkpoint: str) -> str:
    """The JSON sidecar of a checkpoint file (``epoch-NNNNN.json`` beside ``epoch-NNNNN.pt``)."""
    return checkpoint[: -len(".pt")] + ".json"


def _write_atomically(fs, final: str, data: bytes) -> None:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if not {"file", "local"} & set(protocols):
        # Object storage: one PUT is visible whole or not at all (and a move there is a copy and a delete).
        fs.pipe_file(final, data)
        return
    temporary = final + ".tmp"
    with fs.open(temporary, "wb") as handle:
        handle.write(data)
    fs.mv(temporary, final)


def save_checkpoint(directory: str, epoch: int, state: dict, step: int | None = None) -> str:
    """Write ``state`` for ``epoch`` (or its first ``step`` steps) atomically, then its sidecar.

    The run's older within-epoch checkpoints are removed once this one is complete.
    """
    fs, root = _fs(directory)
    fs.makedirs(root, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    final = checkpoint_path(directory, epoch, step)
    older = [path for path in _checkpoints(directory) if _order(path) < (epoch, _END if step is None else step)
             and PATTERN.search(path).group(2) is not None]
    _write_atomically(fs, final, buffer.getvalue())
    # After the .pt: a sidecar always describes a complete checkpoint.
    sidecar = {"epoch": epoch, "step": step, "run": state.get("run"), "identity": state.get("identity"),
               "checkpoint": final.rsplit("/", 1)[-1]}
    _write_atomically(fs, sidecar_path(final), json.dumps(sidecar, indent=1).encode())
    for path in older:  # only this run's own files: the sidecar says who wrote them
        if state.get("run") is not None and (read_sidecar(path) or {}).get("run") == state.get("run"):
            fs.rm([sidecar_path(path), path])
    return final


_END = float("inf")  # an epoch's end comes after all of its steps


def _order(path: str) -> tuple:
    match = PATTERN.search(path)
    return int(match.group(1)), _END if match.group(2) is None else int(match.group(2))


def _checkpoints(directory: str) -> list[str]:
    """The checkpoint files in ``directory``, newest epoch first."""
    fs, root = _fs(directory)
    fs.invalidate_cache(root)
    if not fs.exists(root):
        return []
    # refresh: a cached listing of object storage would miss the checkpoints written since.
    found = [(_order(path), _full(fs, path)) for path in fs.ls(root, detail=False, refresh=True)
             if PATTERN.search(path)]
    return [path for _, path in sorted(found, reverse=True)]


def latest_checkpoint(directory: str) -> str | None:
    """The newest complete checkpoint in ``directory``, or None."""
    found = _checkpoints(directory)
    return found[0] if found else None


def load_checkpoint(path: str) -> dict:
    """The state saved in a checkpoint file; runs no code from the file.

    Raises
    ------
    CheckpointError
        The file is damaged, is not a bigdl checkpoint, or holds objects
        other than tensors, containers, numbers and strings (a pickle that
        would run code is refused, not run).
    """
    fs, resolved = _fs(path)
    try:
        with fs.open(resolved, "rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError, EOFError, ... from a damaged file
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise CheckpointError(
            f"Cannot load the checkpoint {path!r}: it is damaged or not a bigdl checkpoint "
            f"({type(error).__name__}: {reason}). bigdl loads checkpoints with weights_only=True, so nothing in "
            "the file was run. Delete the file to resume from the epoch before, or use another checkpoint_dir."
        ) from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"The checkpoint {path!r} is not a bigdl checkpoint: it holds no {missing[0]!r}. "
                              "Delete the file, or use another checkpoint_dir.")
    return state


def read_sidecar(checkpoint: str) -> dict | None:
    """The sidecar of a checkpoint file, or None when it is absent or unreadable."""
    fs, resolved = _fs(sidecar_path(checkpoint))
    try:
        with fs.open(resolved, "rb") as handle:
            sidecar = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return sidecar if isinstance(sidecar, dict) else None


# ---------------------------------------------------------------- the identity of a run
def run_identity(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ds, *, seed: int,
                 batch_size: int, class_weight=None) -> dict:
    """What makes two runs the same run: architecture, optimizer, store, seed, batch size, class weights (JSON-ready).

    The model's weights are not part of it (they are what a checkpoint
    carries on), nor is the number of ranks (a run may resume on another
    number of workers).  ``class_weight`` is the resolved list of per-class
    weights, or None for an unweighted loss.
    """
    path = str(ds.path)
    return {
        "model": {"class": type(model).__name__,
                  "parameters": {name: list(tensor.shape) for name, tensor in model.state_dict().items()}},
        "optimizer": {"class": type(optimizer).__name__, "lr": float(optimizer.param_groups[0]["lr"])},
        "store": {"path": path if "://" in path else os.path.abspath(path), "created": ds.attrs.get("created")},
        "seed": int(seed),
        "batch_size": int(batch_size),
        "class_weight": None if class_weight is None else [float(weight) for weight in class_weight],
    }


def identity_differences(recorded: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's identity and this run's, in words (empty: the same run)."""
    differences = []
    recorded = {key: value for key, value in recorded.items()
                if not isinstance(current.get(key), dict) or isinstance(value, dict)}  # a forged file: absent
    old_model, new_model = recorded.get("model") or {}, current["model"]
    if old_model.get("class") != new_model["class"]:
        differences.append(f"the model is a {old_model.get('class')} in the checkpoint, a {new_model['class']} here")
    else:
        old, new = old_model.get("parameters"), new_model["parameters"]
        old = old if isinstance(old, dict) else {}
        changed = [f"{name!r} {old.get(name)} there, {new.get(name)} here"
                   for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
        if changed:
            more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
            differences.append(f"the model's parameters differ: {'; '.join(changed[:3])}{more}")
    old_optimizer, new_optimizer = recorded.get("optimizer") or {}, current["optimizer"]
    if old_optimizer != new_optimizer:
        differences.append(f"the optimizer is {old_optimizer.get('class')} lr={old_optimizer.get('lr')} in the "
                           f"checkpoint, {new_optimizer['class']} lr={new_optimizer['lr']} here")
    old_store, new_store = recorded.get("store") or {}, current["store"]
    if old_store != new_store:
        differences.append(f"the store is {old_store.get('path')!r} (created {old_store.get('created')}) in the "
                           f"checkpoint, {new_store['path']!r} (created {new_store['created']}) here")
    for key in ("seed", "batch_size"):
        if recorded.get(key) != current[key]:
            differences.append(f"{key} is {recorded.get(key)} in the checkpoint, {current[key]} here")
    # A checkpoint written before class weights existed trained unweighted: no key means None.
    if recorded.get("class_weight") != current.get("class_weight"):
        differences.append(f"the class weights are {recorded.get('class_weight')} in the checkpoint, "
                           f"{current.get('class_weight')} here")
    return differences


def checkpoint_to_resume(directory: str, *, resume: bool, run_id: str | None, identity: dict):
    """``(path, state)`` of the checkpoint a fit continues from, or None to start afresh.

    With ``resume=True``, the newest checkpoint in ``directory``, which must
    be this run's (same identity).  Otherwise only a checkpoint written by
    this same run id: a rescheduled attempt after its worker died.  That is
    decided from the sidecars, so a fresh fit never unpickles anything.

    Raises
    ------
    CheckpointError
        The checkpoint is damaged, or belongs to another run (the message says
        what differs).
    """
    if resume:
        latest = latest_checkpoint(directory)
    else:
        latest = next((path for path in _checkpoints(directory)
                       if run_id is not None and (read_sidecar(path) or {}).get("run") == run_id), None)
    if latest is None:
        return None
    state = load_checkpoint(latest)
    recorded = state.get("identity")
    if not isinstance(recorded, dict):
        raise CheckpointError(
            f"The checkpoint {latest!r} records no run identity (it was written by an older bigdl), so it cannot be "
            "told apart from another run's. Use another checkpoint_dir, or fit without resume=True."
        )
    differences = identity_differences(recorded, identity)
    if differences:
        raise CheckpointError(
            f"The checkpoint {latest!r} belongs to another run: {'; '.join(differences)}. Resume with the same "
            "model, optimizer, store, seed, batch_size and class_weight, or use another checkpoint_dir for this run."
        )
    return latest, state
