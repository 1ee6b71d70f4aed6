"""The Trainer against a plain in-memory torch loop on data sorted by a feature that drives the target (issue 12.7).

The rows are generated sorted by ``x0``, the feature that weighs most in the
target, as a table exported ``ORDER BY`` a column would be.  Written as they
come, each chunk then holds a narrow band of ``x0`` and 59% of its rows in one
class on average (36% when shuffled; three balanced classes); the
:class:`~bigdl.loaders.torch.ChunkLoader` shuffle (chunk order permuted,
rows mixed within ``buffer_chunks`` chunks) cannot mix what lies more than
a buffer apart.  Shuffling the rows before writing (``from_arrays`` keeps
the given order) makes every chunk a sample of the whole.

Measured on this machine (test accuracy, same model, Adam, 5 epochs of
64-row batches; the in-memory loop permutes all train rows each epoch):

* shuffled store: Trainer 0.860, in-memory loop 0.863 (over four seeds
  of the weights and the shuffles the difference stayed within 0.75 points);
* sorted store, default ``buffer_chunks=4`` of 32 chunks: Trainer 0.856,
  in-memory loop on the same train rows 0.847 (within 1 point over four
  seeds; ``buffer_chunks=32``, the whole split in one buffer, gave
  0.850-0.857).  The buffered shuffle still trains well here because the
  chunk order is permuted every epoch, so consecutive buffers jump across
  the sort;
* a training batch of the sorted store has on average 46% of its rows in
  its most common class, against 39% on the shuffled store (three balanced
  classes; a batch mixes four bands of ``x0``), so its gradient steps are
  biased batch to batch.  That it still comes this close is a property of
  this data, not a guarantee: what the test asserts is only that it trains.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bigdl
from bigdl.loaders.torch import ChunkLoader
from bigdl.models import MLP
from bigdl.train import Trainer

N_ROWS, N_FEATURES, ROWS_PER_CHUNK = 8000, 8, 250
EPOCHS, BATCH_SIZE, LR, HIDDEN = 5, 64, 5e-3, [32]
#: How far the Trainer's test accuracy may be from the in-memory loop's on the shuffled store.
TOLERANCE = 0.015


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sorted_rows():
    """Three balanced classes from ``1.5 x0 + x1 - x2 + noise``, rows in increasing ``x0``."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, N_FEATURES)).astype(np.float32)
    score = 1.5 * X[:, 0] + X[:, 1] - X[:, 2] + rng.normal(scale=0.5, size=N_ROWS)
    y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])).astype(np.int64)
    order = np.argsort(X[:, 0], kind="stable")
    return X[order], y[order]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """``{"shuffled": ..., "sorted": ...}``: the same rows written shuffled and as sorted."""
    X, y = sorted_rows()
    root = tmp_path_factory.mktemp("parity")
    shuffle = np.random.default_rng(1).permutation(N_ROWS)
    options = dict(rows_per_chunk=ROWS_PER_CHUNK, validation=0.1, test=0.2, seed=0)
    return {"shuffled": bigdl.store.from_arrays(X[shuffle], y[shuffle], store=root / "shuffled.zarr", **options),
            "sorted": bigdl.store.from_arrays(X, y, store=root / "sorted.zarr", **options)}


def new_model() -> MLP:
    torch.manual_seed(0)
    return MLP(N_FEATURES, HIDDEN, 3)


def trainer_accuracy(ds) -> tuple[float, list[dict]]:
    run = Trainer(new_model(), lr=LR, epochs=EPOCHS, batch_size=BATCH_SIZE, seed=0, on_cluster=False,
                  progress=False)
    run.fit(ds)
    return run.evaluate(ds, "test")["accuracy"], run.history


def in_memory_accuracy(ds) -> float:
    """The same model, optimizer, epochs and batch size on the same train rows, all permuted every epoch."""
    X, y = (torch.from_numpy(part.compute()) for part in ds.arrays("train"))
    model = new_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            rows = order[start:start + BATCH_SIZE]
            optimizer.zero_grad()
            criterion(model(X[rows]), y[rows]).backward()
            optimizer.step()
    X_test, y_test = (torch.from_numpy(part.compute()) for part in ds.arrays("test"))
    with torch.no_grad():
        return float((model(X_test).argmax(1) == y_test).double().mean())


def majority_share_per_batch(ds) -> float:
    """The mean share of a training batch's most common class (1/3 would be perfectly mixed)."""
    shares = [np.bincount(y.numpy()).max() / len(y)
              for _, y in ChunkLoader(ds, "train", batch_size=BATCH_SIZE, shuffle=True, seed=0)]
    return float(np.mean(shares))


def test_the_sorted_rows_make_single_class_chunks(stores):
    """The premise: written as sorted, chunks lean to one class; shuffled, they are samples of the whole."""
    def purity(ds):
        y = ds.y[:]
        chunks = [y[start:start + ROWS_PER_CHUNK] for start in range(0, len(y), ROWS_PER_CHUNK)]
        return np.mean([np.bincount(chunk).max() / len(chunk) for chunk in chunks])

    assert purity(stores["sorted"]) > 0.55 > 0.45 > purity(stores["shuffled"])
    assert majority_share_per_batch(stores["sorted"]) > majority_share_per_batch(stores["shuffled"]) + 0.03


def test_trainer_on_the_shuffled_store_matches_an_in_memory_loop(stores):
    ds = stores["shuffled"]
    streamed, _ = trainer_accuracy(ds)
    reference = in_memory_accuracy(ds)
    assert reference > 0.8  # the problem is learnt (chance is 1/3), so the comparison means something
    assert abs(streamed - reference) <= TOLERANCE, (streamed, reference)


def test_trainer_on_the_sorted_store_still_trains(stores):
    """Only that it learns: how close it comes to the in-memory loop depends on the data (see the module docstring)."""
    ds = stores["sorted"]
    streamed, history = trainer_accuracy(ds)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert streamed > 0.7
