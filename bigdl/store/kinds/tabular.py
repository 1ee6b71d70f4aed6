"""Tabular stores: ``X`` float32 ``(n, n_features)`` rows, already preprocessed at ingest; a sample is a row."""

from __future__ import annotations

from bigdl.store.kinds._base import SampleView

__all__ = ["TabularView"]


class TabularView(SampleView):
    """Rows as stored: the model sees the preprocessed features of each row."""

    kind = "tabular"

    @property
    def preprocessor(self):
        """The fitted transform, to prepare new raw data the same way."""
        from bigdl.preprocessing import TabularPreprocessor

        if "preprocessing" not in self.attrs:
            return super().preprocessor
        return TabularPreprocessor.from_state(self.attrs["preprocessing"])

    def info_values(self) -> dict:
        """``categories``: per categorical column its encoding, the values kept, and the distinct values and rows
        folded into ``__other__``; ``datetime``: per date/time column its parts and what became of time zones."""
        state = self.attrs.get("preprocessing") or {}
        categories = self.attrs.get("categories")
        if categories is None and state:
            categories = self.preprocessor.category_report()
        datetimes = {entry["name"]: {key: value for key, value in entry.items() if key != "name"}
                     for entry in state.get("datetime") or []}
        return {"categories": categories or {}, "datetime": datetimes}

    def info_lines(self) -> list[str]:
        if "preprocessing" not in self.attrs:
            return []
        summary = self.preprocessor.summary().splitlines()
        return ["preprocess   " + summary[0]] + ["             " + line for line in summary[1:]]
