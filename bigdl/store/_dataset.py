"""Reading a store: :func:`open` and the :class:`Dataset` it returns."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigdl.errors import SchemaError, StoreCorruptedError
from bigdl.store._format import SPLIT_CODES, open_root
from bigdl.store._integrity import REPAIR, Manifest, _reject_files
from bigdl.store._location import display, is_remote, join, read_bytes, tree_bytes
from bigdl.store._verify import CheckedArray, read_checked

__all__ = ["Dataset", "open_store", "StoreInfo"]


def open_store(path: str | os.PathLike) -> "Dataset":
    """Open a bigdl store written by ``bigdl.ingest``.

    Parameters
    ----------
    path : str or path-like
        The store directory (``*.zarr``), or its fsspec URL (``s3://bucket/flights.zarr``):
        credentials come from the environment (``AWS_*``) or
        :func:`bigdl.store.set_storage_options`.

    Returns
    -------
    Dataset

    Raises
    ------
    StoreFormatError
        Not a bigdl store, or a format this bigdl does not read; on object
        storage also a prefix without a commit object (an interrupted write).
    ObjectStoreError
        Access to the object store refused, or no such bucket.
    StoreCorruptedError
        The store's attributes or an array's metadata changed after it was
        written (compared with its integrity manifest; no chunk is read here).

    Examples
    --------
    >>> ds = bigdl.open("work/flights.zarr")        # doctest: +SKIP
    >>> X_train, y_train = ds.arrays("train")      # lazy dask arrays
    """
    root, group, attrs = open_root(path)
    dataset = Dataset(display(path) if is_remote(path) else path, group, attrs)
    dataset.root = str(root)
    return dataset


class Dataset:
    """A store on disk: metadata, lazy dask arrays per split, and summaries.

    Nothing is read into memory until asked: ``X``, ``y`` and :meth:`arrays`
    return dask arrays whose chunks are the store's chunks.  Made by
    :func:`open_store` (``bigdl.open``), not directly.

    Parameters
    ----------
    path : path or str
        The store directory, or its URL on object storage.
    group : zarr.Group
        Its Zarr group, opened read-only.
    attrs : dict
        Its group attributes.
    """

    def __init__(self, path: Path, group, attrs: dict):
        self.path = path if is_remote(path) else Path(path)
        #: Where the Zarr group is: the store directory, or on object storage its committed version's URL.
        self.root = str(self.path)
        self._group = group
        self.attrs = attrs
        # Every chunk read is checked against it (see bigdl.store._integrity).
        self._manifest = Manifest.from_attrs(self.path, attrs)

    # -- metadata -----------------------------------------------------
    @property
    def view(self):
        """The store kind's sample view: what a model sees (rows, normalised images, windows).

        Every consumer reads samples through it; see :mod:`bigdl.store.kinds`.
        """
        from bigdl.store.kinds import VIEWS

        if getattr(self, "_view", None) is None:
            if self.kind not in VIEWS:
                raise SchemaError(f"The store {str(self.path)!r} has kind {self.kind!r}, which this bigdl does not "
                                  f"know (known: {sorted(VIEWS)}); upgrade bigdl.")
            X = self._group["X"]
            self._view = VIEWS[self.kind](self.root, self.attrs, n_rows=X.shape[0],
                                          rows_per_chunk=X.chunks[0], stored_shape=X.shape[1:],
                                          has_target="y" in self._group)
        return self._view

    @property
    def group(self):
        """The store's Zarr group, read-only (the stored arrays, as plain zarr sees them)."""
        return self._group

    @property
    def has_target(self) -> bool:
        """Whether samples come with targets."""
        return self.view.has_target

    @property
    def kind(self) -> str:
        """``"tabular"``, ``"image"`` or ``"sequence"``."""
        return self.attrs["kind"]

    @property
    def n_samples(self) -> int:
        """Stored rows (a sequence store's steps; its windows are ``len(ds.arrays(split)[0])``)."""
        return int(self._group["X"].shape[0])

    @property
    def n_features(self) -> int:
        """Values per stored row: the feature names' count, else the product of ``X``'s row shape."""
        return len(self.attrs.get("feature_names", [])) or int(np.prod(self._group["X"].shape[1:]))

    @property
    def feature_names(self) -> list[str]:
        """The columns of ``X`` (tabular features, sequence channels); empty for images."""
        return list(self.attrs.get("feature_names", []))

    @property
    def target_name(self) -> str | None:
        """The target column's name (a list for several sequence targets); None if unlabelled."""
        return self.attrs.get("target_name")

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"regression"`` or None for unlabelled data."""
        return self.attrs.get("task")

    @property
    def classes(self) -> list | None:
        """Class labels in code order (code ``i`` is ``classes[i]``); None for regression."""
        classes = self.attrs.get("class_names")
        return list(classes) if classes is not None else None

    @property
    def n_classes(self) -> int | None:
        """How many classes (``len(classes)``); None for regression or unlabelled data."""
        return len(self.classes) if self.classes is not None else None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample as a model sees it (a sequence store's: ``(window, channels)``)."""
        return self.view.sample_shape

    @property
    def window(self) -> dict | None:
        """A sequence store's default window spec (``window``, ``horizon``, ``stride``, ``targets``)."""
        return dict(self.attrs["window"]) if "window" in self.attrs else None

    def unscale(self, values, channels: list[str] | None = None) -> np.ndarray:
        """Undo a sequence store's scaling: ``values * std + mean`` per channel, on the last axis.

        See :meth:`bigdl.store.kinds.SequenceView.unscale`.

        Parameters
        ----------
        values : array-like
            Scaled values (predictions, targets), channels on the last axis.
        channels : list of str, optional
            The channels of the last axis (default: the store's targets).

        Returns
        -------
        numpy.ndarray of float64

        Raises
        ------
        SchemaError
            The store is not a sequence store.
        """
        return self.view.unscale(values, channels)

    @property
    def rows_per_chunk(self) -> int:
        """Rows per Zarr chunk (the last chunk may hold fewer)."""
        return int(self._group["X"].chunks[0])

    @property
    def split_counts(self) -> dict[str, int]:
        """Samples per split: ``{'train': n, 'validation': n, 'test': n}``."""
        return dict(self.attrs.get("split_counts", {}))

    @property
    def row_counts(self) -> dict:
        """Rows read, stored and rejected (with reasons); read = stored + rejected."""
        return dict(self.attrs.get("rows", {}))

    def class_counts(self, split: str | None = "train") -> np.ndarray:
        """Samples of each class in ``split``, in code order (``counts[i]`` is ``classes[i]``).

        Reads the ``y`` and ``split`` arrays chunk by chunk (skipping chunks
        without the split), never the features; what ``class_weight="balanced"``
        is computed from.

        Parameters
        ----------
        split : {"train", "validation", "test", "all"} or None, default "train"
            None is ``"all"``.

        Returns
        -------
        numpy.ndarray of int64, shape (n_classes,)

        Raises
        ------
        SchemaError
            The store is not a classification store.
        ParameterError
            ``split`` names no split.
        """
        from bigdl.store.kinds import check_split

        split = check_split(split, owner="Dataset.class_counts")
        if self.task != "classification" or "y" not in self._group:
            raise SchemaError(f"The store {str(self.path)!r} is not a classification store "
                              f"(task {self.task!r}); class counts need class labels.")
        counts = np.zeros(self.n_classes, dtype=np.int64)
        per_chunk = self.attrs.get("chunk_split_counts")
        step = self.rows_per_chunk
        for index, start in enumerate(range(0, self.n_samples, step)):
            if per_chunk is not None and split != "all" and not per_chunk[index][SPLIT_CODES[split]]:
                continue
            rows = slice(start, min(start + step, self.n_samples))
            codes = np.asarray(self._read("y", rows))
            if split != "all":
                codes = codes[np.asarray(self._read("split", rows)) == SPLIT_CODES[split]]
            counts += np.bincount(codes, minlength=self.n_classes)[: self.n_classes]
        return counts

    @property
    def preprocessor(self):
        """The fitted transform, to prepare new raw data the same way (tabular stores)."""
        return self.view.preprocessor

    @property
    def rejects_path(self) -> Path | str:
        """The folder of the quarantined rows' Parquet files (``<store>/rejects``; a URL on object storage)."""
        return join(self.root, "rejects") if is_remote(self.root) else self.path / "rejects"

    # -- data ---------------------------------------------------------
    def _dask(self, name: str):
        import dask.array as da

        from dask.base import tokenize

        array = self._group[name]
        # Keys must differ between stores and between versions of one store
        # rewritten in place, or dask would reuse stale results.
        if is_remote(self.root):
            # Each version of a store on object storage has its own prefix.
            token = tokenize(self.root, self.attrs.get("created"), name)
        else:
            stamp = (self.path / "zarr.json").stat().st_mtime_ns if (self.path / "zarr.json").exists() else 0
            token = tokenize(str(self.path.resolve()), stamp, self.attrs.get("created"), name)
        # As da.from_zarr, but a damaged chunk raises an error naming the store, array and chunk.
        return da.from_array(CheckedArray(array, self.root, name, self._manifest), chunks=array.chunks,
                             name=f"bigdl-{name}-{token}", asarray=False, fancy=False, lock=False,
                             meta=np.empty((0,) * array.ndim, dtype=array.dtype))

    def _read(self, name: str, selection):
        """Rows of one array; a damaged chunk raises StoreCorruptedError naming it."""
        return read_checked(self._group[name], selection, store=self.root, name=name, manifest=self._manifest)

    @property
    def X(self):
        """All samples as a lazy dask array (chunks = store chunks)."""
        return self._dask("X")

    @property
    def y(self):
        """All targets as a lazy dask array; raises for unlabelled stores."""
        if "y" not in self._group:
            raise SchemaError(f"The store {str(self.path)!r} stores no target array (y).")
        return self._dask("y")

    @property
    def split(self):
        """Split codes per sample (0 train, 1 validation, 2 test) as a dask array."""
        return self._dask("split")

    def indices(self, split: str | None) -> np.ndarray:
        """Positions of the samples of ``split`` (reads only the 1-byte split array).

        Parameters
        ----------
        split : {"train", "validation", "test", "all"} or None
            None and ``"all"`` are every sample.

        Returns
        -------
        numpy.ndarray of int

        Raises
        ------
        ParameterError
            ``split`` names no split.
        """
        from bigdl.store.kinds import check_split

        split = check_split(split, owner="Dataset.indices")
        if split == "all":
            return np.arange(self.n_samples)
        codes = self._read("split", slice(None))
        return np.flatnonzero(codes == SPLIT_CODES[split])

    def arrays(self, split: str | None = "train"):
        """Lazy ``(X, y)`` dask arrays of one split's samples as a model sees them.

        One block per store chunk, holding that split's samples of the chunk,
        so computing them reads whole chunks.  Tabular rows are as stored;
        images are float32 pixels normalised with the stored mean/std;
        sequence samples are windows and their targets.  (:attr:`X` and
        :attr:`y` are the arrays as stored.)

        Parameters
        ----------
        split : {"train", "validation", "test", "all"} or None, default "train"
            None is ``"all"``.

        Returns
        -------
        (dask.array.Array, dask.array.Array or None)
            ``y`` is None for unlabelled stores.

        Raises
        ------
        ParameterError
            ``split`` names no split.
        """
        return self.view.arrays(split)

    @property
    def n_chunks(self) -> int:
        """Chunks along the sample axis."""
        return self.view.n_chunks

    def read_chunk(self, index: int, split: str | None = None):
        """One store chunk's samples of ``split`` as NumPy model inputs.

        Reads one Zarr chunk of each array (plus a sequence store's window
        halo); cheap to call inside a Dask task.

        Parameters
        ----------
        index : int
            The chunk.
        split : str, optional
            Default: all the chunk's samples.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray or None)
            ``X`` and ``y`` (None if unlabelled).

        Raises
        ------
        ParameterError
            ``split`` names no split.
        SchemaError
            No such chunk.
        """
        return self.view.samples(index, split)

    def to_xarray(self):
        """The store as an ``xarray.Dataset`` (lazy), with feature names as a coordinate.

        Returns
        -------
        xarray.Dataset
        """
        import xarray as xr

        from bigdl.store._location import zarr_store

        dataset = xr.open_zarr(zarr_store(self.root, read_only=True), consolidated=None)
        if self.feature_names and self.kind == "tabular":
            dataset = dataset.assign_coords(feature=("feature", np.asarray(self.feature_names, dtype=object)))
        return dataset

    def rejects(self):
        """The quarantined rows.

        Returns
        -------
        pandas.DataFrame
            ``source``, ``row``, ``line``, ``raw``, ``reason`` (images: ``source``,
            ``record``, ``class``, ``reason``); empty when nothing was rejected.

        Raises
        ------
        StoreCorruptedError
            A reject file changed, went missing or was added since the store was
            written (each is checked against its CRC-32C in the integrity manifest).
        """
        import pandas as pd

        problems = [] if self._manifest is None else self._manifest.rejects_problems(self.root)
        if problems:
            raise StoreCorruptedError(
                f"The store {str(self.path)!r} was changed after it was written: "
                f"{'; '.join(item['problem'] for item in problems)}. {REPAIR}; `bigdl verify {self.path}` lists "
                "every change.", store=str(self.path), file=problems[0]["file"])
        parts = [part for _, part in sorted(_reject_files(self.root).items())]
        if not parts:
            return pd.DataFrame({"source": pd.Series(dtype=object), "row": pd.Series(dtype="int64"),
                                 "line": pd.Series(dtype="Int64"), "raw": pd.Series(dtype=object),
                                 "reason": pd.Series(dtype=object)})
        import io

        return pd.concat([pd.read_parquet(io.BytesIO(read_bytes(part))) for part in parts], ignore_index=True)

    def size_on_disk(self) -> int:
        """Bytes of the store's files (rejects included).

        Returns
        -------
        int
        """
        if is_remote(self.root):
            return tree_bytes(self.root)
        return sum(path.stat().st_size for path in self.path.rglob("*") if path.is_file())

    def info(self) -> "StoreInfo":
        """A summary: rows, rejects, splits, features, classes, chunks, size, preprocessing.

        Returns
        -------
        StoreInfo
            Prints as a table; :meth:`StoreInfo.to_dict` gives the values.
        """
        return StoreInfo(self)

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}, kind={self.kind!r}, n_samples={self.n_samples}, "
                f"n_features={self.n_features}, task={self.task!r})")


@dataclass
class StoreInfo:
    """What :meth:`Dataset.info` returns: printable, and a dict with :meth:`to_dict`.

    Attributes
    ----------
    dataset : Dataset
        The store summarised.
    """

    dataset: Dataset

    def to_dict(self) -> dict:
        """The summary's values.

        Returns
        -------
        dict
            ``path``, ``kind``, ``task``, ``n_samples``, ``n_features``, ``target``,
            ``classes``, ``rows``, ``splits``, ``row_order``, ``chunks``, sizes, compression,
            source, creation time and bigdl version; and the kind's own
            values (tabular: ``categories``, per categorical column
            ``{"encoding", "kept", "folded_values", "folded_rows"}``, and
            ``datetime``, per date/time column its parts and time zones).
        """
        ds = self.dataset
        X = ds._group["X"]
        return {
            "path": str(ds.path),
            "kind": ds.kind,
            "task": ds.task,
            "n_samples": ds.n_samples,
            "n_features": ds.n_features,
            "target": ds.target_name,
            "classes": ds.classes,
            "rows": ds.row_counts,
            "splits": ds.split_counts,
            "row_order": ds.attrs.get("row_order"),
            "chunks": {"rows_per_chunk": ds.rows_per_chunk, "n_chunks": int(X.nchunks),
                       "chunk_bytes": int(ds.rows_per_chunk * np.prod(X.shape[1:]) * X.dtype.itemsize)},
            "bytes_on_disk": ds.size_on_disk(),
            "bytes_uncompressed": int(X.nbytes),
            "compression": ds.attrs.get("compression"),
            "source": ds.attrs.get("source"),
            "created": ds.attrs.get("created"),
            "bigdl_version": ds.attrs.get("bigdl_version"),
            **ds.view.info_values(),
        }

    def __str__(self) -> str:
        info = self.to_dict()
        ds = self.dataset
        rows = info["rows"]
        lines = [
            f"store        {info['path']}",
            f"kind         {info['kind']} ({info['task'] or 'unlabelled'})",
            f"rows         read {rows.get('read', '?'):,}  stored {rows.get('stored', '?'):,}  "
            f"rejected {rows.get('rejected', '?'):,}",
        ]
        for reason, count in sorted(rows.get("rejected_by_reason", {}).items(), key=lambda item: -item[1]):
            lines.append(f"               {count:,} x {reason}")
        if rows.get("rejected"):
            lines.append(f"               rejects in {ds.rejects_path}")
        splits = info["splits"]
        lines.append("splits       " + "  ".join(f"{name} {count:,}" for name, count in splits.items()))
        order = info["row_order"]
        if order is not None:  # stores written before bigdl shuffled rows do not say
            lines.append("row order    " + (f"shuffled (seed {order['seed']})" if order["shuffled"] else "as input"))
        names = ds.feature_names
        if names:
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        else:
            shown = " x ".join(str(size) for size in ds._group["X"].shape[1:]) + " values per sample"
        lines.append(f"features     {info['n_features']}: {shown}")
        if info["target"] is not None:
            lines.append(f"target       {info['target']!r}" + (
                f", {len(info['classes'])} classes: {info['classes'][:10]}" if info["classes"] else ""))
        chunks = info["chunks"]
        lines.append(f"chunks       {chunks['n_chunks']} x {chunks['rows_per_chunk']:,} rows "
                     f"({chunks['chunk_bytes'] / 2**20:.1f} MiB uncompressed each)")
        ratio = info["bytes_uncompressed"] / max(info["bytes_on_disk"], 1)
        lines.append(f"size         {info['bytes_on_disk'] / 2**20:.1f} MiB on disk, "
                     f"{info['bytes_uncompressed'] / 2**20:.1f} MiB of X uncompressed ({ratio:.1f}x, "
                     f"{info['compression']})")
        lines.extend(ds.view.info_lines())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def __getitem__(self, key):
        return self.to_dict()[key]
