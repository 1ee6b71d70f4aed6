"""plot_history draws on its own Figure: a PNG, no pyplot state, the caller's backend untouched."""

from __future__ import annotations

import pytest

from bigdl.train._plot import plot_history
from support import pyplot_untouched_by

HISTORY = [{"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch, "val_accuracy": 0.5 + epoch / 10}
           for epoch in (1, 2, 3)]


@pytest.mark.parametrize("history", [HISTORY, [{"epoch": 1, "train_loss": 0.5}]], ids=["validation", "train-only"])
def test_plot_history_writes_a_png(history, tmp_path):
    path = tmp_path / "plots" / "history.png"
    assert plot_history(history, path) == str(path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_plot_history_leaves_matplotlib_as_it_was(tmp_path):
    pyplot_untouched_by(f"""
        from bigdl.train._plot import plot_history
        plot_history({HISTORY!r}, {str(tmp_path / "history.png")!r})
    """)


def test_an_empty_history_is_refused(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_history([], tmp_path / "history.png")
