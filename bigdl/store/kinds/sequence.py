"""Sequence stores: the series stored once ``(n_steps, n_channels)``; a sample is a window with its horizon's targets.

Windows are cut at load time, never materialised.  A window start ``i`` is
valid when the window and its horizon stay inside one run (one series, no
gap), its targets belong to the split, and its position in the series is a
multiple of the stride.  A chunk's windows may reach into the next chunks
(a halo of ``window + horizon - 1`` rows), so each chunk read includes it.
"""

from __future__ import annotations

import numpy as np

from bigdl._validation import Interval, check_params
from bigdl.store._format import SPLIT_CODES
from bigdl.store.kinds._base import SampleView, check_split

__all__ = ["SequenceView", "CALENDAR_FEATURES", "calendar_features"]

#: Calendar features of a window (``sequences(calendar=[...])``): the period each one's sine and cosine turn over.
CALENDAR_FEATURES = {"hour": 24, "dayofweek": 7, "dayofyear": 365.25, "month": 12}
_SPEC_KEYS = ("window", "horizon", "stride", "targets", "known_future", "calendar")


def calendar_features(times: np.ndarray, names: list[str]) -> np.ndarray:
    """The sine and cosine of each calendar feature at each time: ``(len(times), 2 * len(names))`` float32.

    Parameters
    ----------
    times : numpy.ndarray of int64
        Nanoseconds since 1970 (the stored times).
    names : list of str
        Among :data:`CALENDAR_FEATURES`.

    Returns
    -------
    numpy.ndarray of float32
    """
    import pandas as pd

    index = pd.DatetimeIndex(np.asarray(times, dtype=np.int64).view("datetime64[ns]"))
    values = {"hour": lambda: index.hour + index.minute / 60.0, "dayofweek": lambda: index.day_of_week,
              "dayofyear": lambda: index.day_of_year - 1, "month": lambda: index.month - 1}
    columns = []
    for name in names:
        angle = 2 * np.pi * np.asarray(values[name](), dtype=np.float64) / CALENDAR_FEATURES[name]
        columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((len(times), 0), np.float32)


class SequenceView(SampleView):
    """Windows ``(window, channels)`` of the scaled series and their targets ``(horizon,)`` or ``(horizon, targets)``.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`~bigdl.store.kinds.SampleView`.
    window : dict, optional
        Overrides of the store's window spec (``window``, ``horizon``, ``stride``).
    metadata : bool, default False
        Also give each window's series code, origin time (its last input
        step) and target times: :meth:`read_chunk` then returns a dict of
        those arrays in the place of ``y`` and :meth:`gather` a third item.

    Notes
    -----
    With ``known_future`` channels or ``calendar`` features in the window
    spec, a window is ``(window + horizon, channels + 2 * n_calendar + 1)``:
    its first ``window`` steps hold every channel and the calendar
    features; its last ``horizon`` steps (the *decoder part*) hold the
    known-future channels and the calendar features at the target times,
    zeros for the other channels, and a last indicator column is 1 there.
    """

    kind = "sequence"
    samples_are_rows = False

    def __init__(self, *args, window: dict | None = None, metadata: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.metadata = bool(metadata)
        spec = dict(self.attrs.get("window", {}))
        spec.update(window or {})
        channels = list(self.attrs.get("feature_names", []))
        spec["target_index"] = [channels.index(name) for name in spec.get("targets", channels)]
        self.windows = spec
        self.has_target = True
        self._counts: dict = {}

    def with_windows(self, *, window=None, horizon=None, stride=None, owner: str = "with_windows") -> "SequenceView":
        given = {"window": window, "horizon": horizon, "stride": stride}
        check_params(owner, given, dict.fromkeys(given, [Interval(int, 1, None), None]))
        changes = {name: value for name, value in given.items() if value is not None}
        if not changes:
            return self
        spec = {key: self.windows[key] for key in _SPEC_KEYS if key in self.windows}
        spec.update(changes)
        return SequenceView(self.path, self.attrs, n_rows=self.n_rows, rows_per_chunk=self.rows_per_chunk,
                            stored_shape=self.stored_shape, has_target=True, window=spec, metadata=self.metadata)

    def with_metadata(self, metadata: bool = True) -> "SequenceView":
        """This view, with (or without) each window's series, origin time and target times.

        Parameters
        ----------
        metadata : bool, default True

        Returns
        -------
        SequenceView
        """
        if bool(metadata) == self.metadata:
            return self
        spec = {key: self.windows[key] for key in _SPEC_KEYS if key in self.windows}
        return SequenceView(self.path, self.attrs, n_rows=self.n_rows, rows_per_chunk=self.rows_per_chunk,
                            stored_shape=self.stored_shape, has_target=True, window=spec, metadata=bool(metadata))

    @property
    def decoder(self) -> bool:
        """Whether windows have a decoder part (known-future channels or calendar features)."""
        return bool(self.windows.get("known_future") or self.windows.get("calendar"))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        window = int(self.windows.get("window", 1))
        if not self.decoder:
            return (window, int(self.stored_shape[0]))
        extra = 2 * len(self.windows.get("calendar") or ()) + 1
        return (window + int(self.windows.get("horizon", 1)), int(self.stored_shape[0]) + extra)

    def decoder_columns(self) -> dict:
        """Which input columns are what in a decoder layout: ``values``, ``known`` (decoder part), ``calendar``.

        Returns
        -------
        dict of list of int
        """
        channels = list(self.attrs.get("feature_names", []))
        n_values, n_calendar = len(channels), 2 * len(self.windows.get("calendar") or ())
        return {"values": list(range(n_values)),
                "known": [channels.index(name) for name in self.windows.get("known_future") or ()],
                "calendar": list(range(n_values, n_values + n_calendar)), "indicator": [n_values + n_calendar]}

    def _with_calendar(self, X: np.ndarray, times: np.ndarray) -> np.ndarray:
        calendar = self.windows.get("calendar")
        return np.concatenate([X, calendar_features(times, calendar)], axis=1) if calendar else X

    @property
    def target_shape(self) -> tuple[int, ...]:
        horizon, targets = int(self.windows.get("horizon", 1)), len(self.windows["target_index"])
        return (horizon,) if targets == 1 else (horizon, targets)

    @property
    def target_dtype(self):
        """Targets are float32 values of the scaled series."""
        return np.float32

    def _token(self):
        return (self.windows.get("window"), self.windows.get("horizon"), self.windows.get("stride"),
                tuple(self.windows["target_index"]))

    # -- windows -----------------------------------------------------------
    def _window_starts(self, chunk: int, split: str):
        """Rows ``[low, stop)`` a chunk's windows need (its rows and the halo) and the valid window starts."""
        low, high = self.chunk_bounds(chunk)
        return self.starts_between(low, high, split)

    def starts_between(self, low: int, high: int, split: str = "all"):
        """The valid window starts among rows ``[low, high)``, and the rows ``[low, stop)`` their windows need.

        The one rule of which windows exist (the loader's, predict's and the
        baselines'): window and horizon inside one run, the position a
        multiple of the stride, the targets in ``split``.

        Parameters
        ----------
        low, high : int
            Rows where windows may start (a chunk, a series).
        split : {"train", "validation", "test", "all"}, default "all"

        Returns
        -------
        (slice, numpy.ndarray of int)
            The rows read and the starts, relative to ``low``.
        """
        window, horizon, stride = self.windows["window"], self.windows["horizon"], self.windows["stride"]
        span = window + horizon
        stop = min(high + span - 1, self.n_rows)
        run = self.read("run", slice(low, stop))
        position = self.read("position", slice(low, high))
        starts = np.arange(high - low)
        last = starts + span - 1
        valid = last < len(run)
        last = np.minimum(last, len(run) - 1)
        valid &= run[starts] == run[last]  # runs are non-decreasing: equal ends, one run
        valid &= position % stride == 0
        if split != "all":
            # Splits are contiguous in time within a series: the first and last target steps decide.
            codes = self.read("split", slice(low, stop))
            code = SPLIT_CODES[split]
            valid &= (codes[np.minimum(starts + window, len(codes) - 1)] == code) & (codes[last] == code)
        return slice(low, stop), np.flatnonzero(valid)

    def chunk_counts(self, split: str = "all") -> np.ndarray:
        split = check_split(split)
        stored = self.attrs.get("chunk_window_counts") or {}
        spec = self.attrs.get("window", {})
        if split in stored and len(stored[split]) == self.n_chunks and all(
                self.windows.get(key) == spec.get(key) for key in ("window", "horizon", "stride", "targets")):
            return np.asarray(stored[split], dtype=np.int64)  # counted at ingest for the store's own window spec
        if split not in self._counts:
            # One pass over the small per-step arrays (X is not read).
            self._counts[split] = np.array([len(self._window_starts(chunk, split)[1]) for chunk in range(self.n_chunks)],
                                           dtype=np.int64)
        return self._counts[split]

    # A chunk's windows reach into the next chunk's rows: it is read as its own array.
    reads_into = False

    def read_chunk(self, chunk: int, split: str = "all", into: dict | None = None):
        if into is not None:
            raise TypeError("SequenceView.read_chunk reads windows across chunk ends; it decodes into no array.")
        split = check_split(split)
        rows, starts = self._window_starts(chunk, split)
        meta = {"series": self.read("series", rows), "time": self.read("time", rows)} if self.metadata else None
        X = self.read("X", rows)
        if self.windows.get("calendar"):
            X = self._with_calendar(X, meta["time"] if meta else self.read("time", rows))
        return X, meta, starts

    def join(self, pieces: list, out: dict | None = None):
        """Several read chunks as one; the metadata arrays (when asked) are joined row for row.

        Parameters
        ----------
        pieces : list of tuple
        out : dict, optional
            Arrays reused from one call to the next (see :meth:`SampleView.join`).

        Returns
        -------
        (numpy.ndarray, dict or None, numpy.ndarray)
        """
        X, _, rows = super().join([(piece[0], None, piece[2]) for piece in pieces], out=out)
        if pieces[0][1] is None or len(pieces) == 1:
            return X, pieces[0][1], rows
        return X, {key: np.concatenate([piece[1][key] for piece in pieces]) for key in pieces[0][1]}, rows

    def gather(self, X: np.ndarray, y, index: np.ndarray):
        """The windows starting at ``index`` and their targets (and, with metadata, where they are).

        Parameters
        ----------
        X : numpy.ndarray
            Rows read by :meth:`read_chunk` (with their halo), or joined.
        y : dict or None
            The metadata arrays :meth:`read_chunk` returned (None without metadata).
        index : numpy.ndarray of int
            Window starts.

        Returns
        -------
        tuple
            ``(inputs, targets)``, and with metadata a third item: a dict of
            ``series`` (code), ``origin`` (the time of the last input step)
            and ``target_time`` ``(n, horizon)``.
        """
        window, horizon = self.windows["window"], self.windows["horizon"]
        # A strided view of every window (no copy); indexing it copies whole (channels, span) blocks,
        # several times faster than gathering window * batch single rows.
        spans = np.lib.stride_tricks.sliding_window_view(X, window + horizon, axis=0)[index]
        inputs = self.decoder_inputs(spans) if self.decoder else np.ascontiguousarray(
            spans[:, :, :window].transpose(0, 2, 1))
        targets = spans[:, self.windows["target_index"], window:]
        targets = targets[:, 0] if targets.shape[1] == 1 else np.ascontiguousarray(targets.transpose(0, 2, 1))
        if not isinstance(y, dict):
            return inputs, targets
        last = index + window - 1
        times = np.lib.stride_tricks.sliding_window_view(y["time"], window + horizon)[index][:, window:]
        return inputs, targets, {"series": y["series"][last].astype(np.int64), "origin": y["time"][last],
                                 "target_time": np.ascontiguousarray(times)}

    # -- past the end ------------------------------------------------------
    def series_rows(self) -> np.ndarray:
        """Where each series lies: ``(n_series, 2)`` first row and end row (series are stored one after another).

        Returns
        -------
        numpy.ndarray of int64
        """
        lengths = np.asarray(self.attrs.get("series", {}).get("lengths") or [self.n_rows], dtype=np.int64)
        ends = np.cumsum(lengths)
        return np.stack([ends - lengths, ends], axis=1)

    def last_windows(self, codes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last ``window`` steps of each series in ``codes``: the inputs of a forecast past its end.

        One read of the rows from the first of these windows to the end of the
        last (series are stored one after another, so a group of neighbouring
        series is one contiguous slice).

        Parameters
        ----------
        codes : array-like of int
            Series codes (``attrs["series"]["names"]`` order).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray, numpy.ndarray)
            Inputs ``(n, window, channels)`` float32 (scaled, as the model
            sees them; the calendar columns after the channels when the
            spec has them), the time of each series' last step (as stored) and
            whether the window is usable (the series has ``window`` steps
            and no gap inside them); unusable windows are zeros.
        """
        codes = np.asarray(codes, dtype=np.int64)
        window = int(self.windows["window"])
        bounds = self.series_rows()[codes]
        starts, ends = np.maximum(bounds[:, 1] - window, bounds[:, 0]), bounds[:, 1]
        width = self.stored_shape[0] + 2 * len(self.windows.get("calendar") or ())
        inputs = np.zeros((len(codes), window, width), dtype=np.float32)
        if not len(codes):
            return inputs, np.zeros(0, dtype=self.array("time").dtype), np.zeros(0, dtype=bool)
        low, high = int(starts.min()), int(ends.max())
        rows = slice(low, high)
        X, times, runs = (self.read(name, rows) for name in ("X", "time", "run"))
        X = self._with_calendar(X, times)
        usable = (ends - starts == window) & (ends > starts)
        last = np.maximum(ends - 1 - low, 0)
        usable &= runs[np.maximum(starts - low, 0)] == runs[last]
        for item in np.flatnonzero(usable):
            inputs[item] = X[starts[item] - low:ends[item] - low]
        return self.to_model(inputs), times[last], usable

    def future_window(self, inputs: np.ndarray, times: np.ndarray, known: dict | None = None) -> np.ndarray:
        """A decoder-layout window past the end: the last ``window`` steps, then the future's known values.

        Parameters
        ----------
        inputs : numpy.ndarray of shape (n, window, columns)
            From :meth:`last_windows`.
        times : numpy.ndarray of shape (n, horizon)
            The future grid times (stored form).
        known : dict, optional
            Each known-future channel's future values ``(n, horizon)`` in
            original units.

        Returns
        -------
        numpy.ndarray of shape (n, window + horizon, columns + 1)
        """
        n, horizon = times.shape
        future = np.zeros((n, horizon, inputs.shape[2]), dtype=np.float32)
        state = self.attrs.get("preprocessing", {})
        channels = list(self.attrs.get("feature_names", []))
        for name, values in (known or {}).items():
            index = channels.index(name)
            mean, std = (state["mean"][index], state["std"][index]) if "mean" in state else (0.0, 1.0)
            future[:, :, index] = (np.asarray(values, dtype=np.float64) - mean) / std
        calendar = self.windows.get("calendar")
        if calendar:
            future[:, :, self.decoder_columns()["calendar"]] = calendar_features(times.ravel(), calendar).reshape(
                n, horizon, -1)
        return self.decoder_inputs(np.concatenate([inputs, future], axis=1).transpose(0, 2, 1))

    def future_times(self, last, count: int) -> np.ndarray:
        """The ``count`` times of the store's grid after ``last`` (month starts after a month start...).

        Parameters
        ----------
        last : int or float
            A stored time (ns for dates).
        count : int

        Returns
        -------
        numpy.ndarray
            As stored: int64 ns for dates, float64 for numbers.
        """
        from bigdl.preprocessing._grid import future_times

        time = self.attrs.get("preprocessing", {}).get("time", {})
        step = time.get("step", 1)
        if time.get("kind") != "datetime":
            step = float(step)  # numeric times are float64, whatever the step looks like
        return future_times(last, step, int(count))

    def decoder_inputs(self, spans: np.ndarray) -> np.ndarray:
        """Windows with their decoder part, from spans ``(n, columns, window + horizon)`` of the rows read.

        Parameters
        ----------
        spans : numpy.ndarray
            Channels (and calendar columns) by step, inputs then targets.

        Returns
        -------
        numpy.ndarray of shape (n, window + horizon, columns + 1)
        """
        window = self.windows["window"]
        columns = self.decoder_columns()
        # A copy always: the spans may be laid out so that the transpose is contiguous, and then
        # ascontiguousarray would hand back a view whose zeroing erased the targets.
        full = np.array(spans.transpose(0, 2, 1), dtype=np.float32, order="C", copy=True)
        unknown = [index for index in columns["values"] if index not in columns["known"]]
        full[:, window:, unknown] = 0.0  # the future of these is what is forecast, or not known
        indicator = np.zeros((*full.shape[:2], 1), dtype=np.float32)
        indicator[:, window:] = 1.0
        return np.concatenate([full, indicator], axis=2)

    def unscale(self, values, channels: list[str] | None = None) -> np.ndarray:
        """Undo the store's scaling: ``values * std + mean`` per channel, on the last axis.

        Parameters
        ----------
        values : array-like
            Scaled values (predictions, targets), channels on the last axis.
        channels : list of str, optional
            The channels of the last axis (default: the store's targets when
            their number matches, else every channel); a loader's ``y`` of one
            target (shape ``(batch, horizon)``) is taken as that target.

        Returns
        -------
        numpy.ndarray of float64
        """
        state = self.attrs.get("preprocessing", {})
        if "mean" not in state:
            return super().unscale(values, channels)
        values = np.asarray(values, dtype=np.float64)
        names = state["channels"]
        targets = self.attrs.get("window", {}).get("targets", names)
        if channels is None:
            channels = targets if len(targets) > 1 and values.shape[-1] == len(targets) else (
                targets if len(targets) == 1 else names)
        index = [names.index(name) for name in channels]
        mean, std = np.asarray(state["mean"])[index], np.asarray(state["std"])[index]
        if len(index) == 1:
            return values * std[0] + mean[0]
        return values * std + mean

    def why_empty(self, split: str) -> str:
        window, horizon = int(self.windows.get("window", 1)), int(self.windows.get("horizon", 1))
        lengths = self.attrs.get("series", {}).get("lengths") or []
        longest = max(lengths) if lengths else 0
        if longest < window + horizon:
            return (f"no series is long enough for one window: window={window} + horizon={horizon} needs "
                    f"{window + horizon} steps and the longest series has {longest}; use a smaller window or "
                    "horizon (ChunkLoader(window=...)) or longer series")
        return (f"no window of window={window} + horizon={horizon} steps lies wholly in its {split!r} part of a "
                f"series (windows per split are cut inside each split); use a smaller window or a larger {split} "
                "fraction")

    def info_lines(self) -> list[str]:
        state = self.attrs.get("preprocessing", {})
        steps, window, series = self.attrs.get("steps", {}), self.attrs.get("window", {}), self.attrs.get("series", {})
        return [f"series       {len(series.get('names', []))} ({series.get('column') or 'one series'}), "
                f"{steps.get('total', 0):,} steps: {steps.get('observed', 0):,} observed, "
                f"{steps.get('inserted', 0):,} inserted by gaps={state.get('gaps')!r}",
                f"windows      window {window.get('window')}, horizon {window.get('horizon')}, "
                f"stride {window.get('stride')}, targets {window.get('targets')} (cut at load time)"
                + (f"; decoder part: known future {window.get('known_future') or []}, calendar "
                   f"{window.get('calendar') or []}" if self.decoder else ""),
                *self._grid_lines(state, series)]

    def _grid_lines(self, state: dict, series: dict) -> list[str]:
        """The grid and the steps gap-filled per series (the most filled first, at most 5 named)."""
        time = state.get("time", {})
        lines = [f"grid         frequency {time.get('frequency', time.get('step'))!r}"
                 f"{' (calendar)' if time.get('calendar') else ''}"] if time else []
        filled, names = series.get("filled"), series.get("names", [])
        if filled is not None and names:
            lengths = series.get("lengths", [])
            order = sorted(range(len(names)), key=lambda code: -filled[code])[:5]
            shown = ", ".join(f"{names[code] or 'the series'} {filled[code]:,}/{lengths[code]:,}" for code in order)
            more = f" (of {len(names):,} series; ds.info()['filled_steps'] has all)" if len(names) > 5 else ""
            lines.append(f"filled steps {shown}{more}")
        return lines

    def info_values(self) -> dict:
        """The grid frequency and the gap-filled steps of each series (``{name: count}``).

        Returns
        -------
        dict
            ``frequency`` and ``filled_steps``.
        """
        time = self.attrs.get("preprocessing", {}).get("time", {})
        series = self.attrs.get("series", {})
        filled = series.get("filled")
        return {"frequency": time.get("frequency", time.get("step")),
                "filled_steps": None if filled is None else dict(zip(series.get("names", []), filled))}
