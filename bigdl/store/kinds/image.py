"""Image stores: ``X`` uint8 ``(n, C, H, W)``; a sample is the image as float pixels normalised with the stored mean/std."""

from __future__ import annotations

import numpy as np

from bigdl.store.kinds._base import SampleView

__all__ = ["ImageView"]


class ImageView(SampleView):
    """Images: stored as uint8, seen by models as ``(pixel / 255 - mean) / std`` per channel (float32).

    The statistics are the stored images' own, measured at ingest.  The
    loader applies :meth:`to_model` to each batch after any augmentation
    (which works on the stored pixels, so its padding is black).
    """

    kind = "image"
    augmentable = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        state = self.attrs.get("preprocessing", {})
        channels = self.stored_shape[0] if self.stored_shape else 1
        self.mean = np.asarray(state.get("mean", [0.0] * channels), dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(state.get("std", [1.0] * channels), dtype=np.float32).reshape(1, -1, 1, 1)

    def to_model(self, X: np.ndarray) -> np.ndarray:
        pixels = np.asarray(X, dtype=np.float32)
        pixels /= np.float32(255.0)
        pixels -= self.mean
        pixels /= self.std
        return pixels

    def info_lines(self) -> list[str]:
        state = self.attrs.get("preprocessing", {})
        mean = ", ".join(f"{value:.3f}" for value in state.get("mean", []))
        std = ", ".join(f"{value:.3f}" for value in state.get("std", []))
        return [f"images       mode {state.get('mode')}, size {state.get('size')} ({state.get('resize')}), "
                f"channel mean [{mean}], std [{std}] (applied at load time)"] + [
            f"               {count:,} image(s) with {bits} bits per channel scaled to 8: "
            f"round(value * 255 / {(1 << int(bits)) - 1})"
            for bits, count in state.get("scaled_to_8_bits", {}).items()] + self._link_lines()

    def _link_lines(self) -> list[str]:
        """What an image folder's links did: directory links are skipped, file links read as their files."""
        source = self.attrs.get("source") or {}
        skipped, file_links = source.get("skipped_directory_links") or [], source.get("file_links") or 0
        lines = []
        if skipped:
            shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            lines.append(f"links        {len(skipped):,} directory link(s) skipped, not followed: {shown}")
        if file_links:
            lines.append(f"links        {file_links:,} file link(s) read as the files they point to")
        return lines
