"""Light, on-the-fly augmentation of image batches: random crop with zero padding, horizontal flip.

:class:`Augment` works on whole uint8 ``(B, C, H, W)`` batches as the loader
reads them, before normalisation (so padding is black, as in the usual
``RandomCrop(padding=...)`` recipe), with one vectorised gather per batch.
Randomness comes only from the generator the loader passes in, seeded by
``(seed, epoch, step)``: the numbers are drawn for the whole global step and
each rank takes its samples' share, so a sample is augmented the same way
whatever the world size or the ``DataLoader`` workers.  The
loader applies it to the split it was asked for; :class:`bigdl.train.Trainer`
passes ``loader_options`` to its training loader only, so evaluation never
sees augmented images.
"""

from __future__ import annotations

import numpy as np
import torch

from bigdl._validation import Hidden, Interval, Options, Predicate, check_params
from bigdl.errors import SchemaError

__all__ = ["Augment", "resolve_augment"]

NAMES = ("crop", "flip")
DEFAULT_CROP = 4


class Augment:
    """Random crop (after zero padding) and random horizontal flip of image batches.

    Parameters
    ----------
    crop : int, default 4
        Pad each side by ``crop`` pixels of zeros, then cut a window of the
        original size at a random offset: images shift by up to ``crop``
        pixels each way.  0 turns cropping off.
    flip : bool, default True
        Mirror each image left-right with probability 1/2.

    Raises
    ------
    ParameterError
        ``crop`` is not an int >= 0 or ``flip`` not a bool.

    Examples
    --------
    >>> loader = ChunkLoader(ds, "train", augment=Augment(crop=2, flip=False))  # doctest: +SKIP
    >>> loader = ChunkLoader(ds, "train", augment="crop+flip")                  # the same as Augment()  # doctest: +SKIP
    """

    def __init__(self, crop: int = DEFAULT_CROP, flip: bool = True):
        check_params("Augment", {"crop": crop, "flip": flip}, {"crop": [Interval(int, 0, None)], "flip": [bool]})
        self.crop = int(crop)
        self.flip = flip

    def __call__(self, x: torch.Tensor, rng: np.random.Generator, *, of: int | None = None,
                 at: int = 0) -> torch.Tensor:
        """Augment a ``(B, C, H, W)`` batch with random numbers drawn from ``rng``.

        Parameters
        ----------
        x : torch.Tensor
            The batch.
        rng : numpy.random.Generator
        of, at : int, optional
            The batch is samples ``at .. at + B`` of a step of ``of`` samples
            (default: the whole step): the numbers are drawn for all ``of``
            and this batch takes its share.

        Returns
        -------
        torch.Tensor
        """
        if x.ndim != 4:
            raise SchemaError(f"Augment works on image batches (B, C, H, W); got a batch of shape {tuple(x.shape)}.")
        n, channels, height, width = x.shape
        total = n if of is None else int(of)
        share = slice(at, at + n)
        if self.crop:
            pad = self.crop
            padded = torch.zeros((n, channels, height + 2 * pad, width + 2 * pad), dtype=x.dtype)
            padded[:, :, pad:pad + height, pad:pad + width] = x
            top = torch.from_numpy(rng.integers(0, 2 * pad + 1, size=total)[share])
            left = torch.from_numpy(rng.integers(0, 2 * pad + 1, size=total)[share])
            rows = (top[:, None] + torch.arange(height))[:, None, :, None]
            cols = (left[:, None] + torch.arange(width))[:, None, None, :]
            x = padded[torch.arange(n)[:, None, None, None], torch.arange(channels)[None, :, None, None], rows, cols]
        if self.flip:
            mirrored = torch.from_numpy(rng.random(total)[share] < 0.5)
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        return x

    def __eq__(self, other) -> bool:
        return isinstance(other, Augment) and (self.crop, self.flip) == (other.crop, other.flip)

    def __repr__(self) -> str:
        return f"Augment(crop={self.crop}, flip={self.flip})"


def _spec_parts(spec: str) -> list[str]:
    return [part.strip() for part in spec.split("+") if part.strip()]


AUGMENT = [None, Predicate(lambda spec: isinstance(spec, str) and bool(_spec_parts(spec))
                           and all(part in NAMES for part in _spec_parts(spec)),
                           "a str such as 'crop', 'flip' or 'crop+flip'"),
           Augment, Hidden(Options([False]))]


def resolve_augment(augment, view) -> Augment | None:
    """The :class:`Augment` for a loader's ``augment=``.

    Parameters
    ----------
    augment : None, str or Augment
        None (or False): no augmentation; ``"crop"``, ``"flip"`` or
        ``"crop+flip"``: those with their defaults; or an :class:`Augment`.
    view : SampleView
        The loader's store view; only image stores take augmentation.

    Returns
    -------
    Augment or None

    Raises
    ------
    ParameterError
        ``augment`` is none of these.
    SchemaError
        Augmentation asked of a store that is not an image store.
    """
    check_params("ChunkLoader", {"augment": augment}, {"augment": AUGMENT})
    if augment is None or augment is False:
        return None
    if isinstance(augment, str):
        parts = _spec_parts(augment)
        augment = Augment(crop=DEFAULT_CROP if "crop" in parts else 0, flip="flip" in parts)
    if not view.augmentable:
        raise SchemaError(f"augment= applies to image stores; this store is of kind {view.kind!r}.")
    return augment
