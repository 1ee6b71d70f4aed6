"""The one ingest pipeline every store kind runs, and the helpers its steps share.

:func:`run_ingest` owns the skeleton: open the store atomically and its
dashboard job, **read** (one Dask task per input block: parse, validate,
quarantine, stage), account for every row, **fit** on the client from the
blocks' summaries, run any extra stages a kind needs (sequences sort), create
the arrays, **write** whole aligned chunks (one task per store chunk, so no
two tasks touch one Zarr chunk: dask #12583), write the **rejects**, and
**finish** the store with its attributes and per-chunk split counts.

A kind (tabular, image, sequence) plugs in its own steps by subclassing
:class:`IngestSteps`; nothing of the skeleton is copied into a kind.  The
helpers here (row accounting, chunk jobs, chunk writes, reason families,
rejects files) are the only copies of that logic in :mod:`bigdl.ingest`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bigdl.errors import EmptyResultError
from bigdl.runtime import ingest_job, run_tasks
from bigdl.store._commit import LOCK_NAME, atomic_store
from bigdl.store._dataset import Dataset, open_store
from bigdl.store._format import check_whole_chunk
from bigdl.store._location import display, is_remote, join, remove_tree, write_bytes, zarr_store
from bigdl.store._write import finish_store

__all__ = ["IngestSteps", "run_ingest", "account", "check_accounting", "chunk_jobs", "write_chunk", "shuffle_rng",
           "shuffle_rows", "row_order",
           "register_reason_family", "reason_family", "count_reasons", "write_rejects_part", "empty_message"]

# Store kind -> the function that folds a reject reason into its family, for counting
# ("column 'x': 'abc' is not a number" -> "column 'x': not a number").  Each kind registers its own.
REASON_FAMILIES: dict[str, Callable[[str], str]] = {}


def register_reason_family(kind: str) -> Callable:
    """Decorator registering ``function(reason) -> family`` as the reason families of store ``kind``.

    Registering again replaces the previous function, so reloading a module is harmless.

    Parameters
    ----------
    kind : str
        The store kind (``"tabular"``...).

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.
    """
    def register(function: Callable[[str], str]) -> Callable[[str], str]:
        REASON_FAMILIES[kind] = function
        return function

    return register


def reason_family(kind: str, reason: str) -> str:
    """The family of a reject ``reason`` under the rules of store ``kind`` (the reason itself if none).

    Parameters
    ----------
    kind : str
    reason : str

    Returns
    -------
    str
    """
    return REASON_FAMILIES.get(kind, str)(reason)


def count_reasons(kind: str, rejects: Sequence[dict]) -> Counter:
    """Rejects counted by reason family.

    Parameters
    ----------
    kind : str
        The store kind whose reason families apply.
    rejects : sequence of dict
        Each with a ``reason``.

    Returns
    -------
    collections.Counter
    """
    return Counter(reason_family(kind, item["reason"]) for item in rejects)


# ---------------------------------------------------------------- accounting
def check_accounting(read: int, stored: int, rejected: int, what: str = "rows") -> None:
    """Raise when ``read != stored + rejected``: a bug, never a user error.

    The store would otherwise claim rows it does not hold (or hold rows it
    never read), so the ingest refuses to commit it.

    Parameters
    ----------
    read, stored, rejected : int
    what : str, default "rows"
        The unit, for the message.

    Raises
    ------
    RuntimeError
        The counts do not add up.
    """
    if read != stored + rejected:
        raise RuntimeError(f"bigdl internal error: {what} read ({read}) != stored ({stored}) "
                           f"+ rejected ({rejected}).")


def account(results: Sequence[dict], *, expected: int | None = None, what: str = "rows") -> dict:
    """Sum the read tasks' counts into the store's row accounting, checking read = stored + rejected.

    Parameters
    ----------
    results : sequence of dict
        One per read task, each with ``n_records`` (items read), ``n_valid``
        (staged), ``n_rejected`` and ``reasons`` (a Counter of reason families).
    expected : int, optional
        Items the plan listed; when given, the tasks must have read exactly these.
    what : str, default "rows"
        The unit, for the error message.

    Returns
    -------
    dict
        ``read``, ``stored``, ``rejected`` and ``reasons`` (family -> count).

    Raises
    ------
    RuntimeError
        The counts do not add up, or differ from ``expected`` (a bug, not a user error).

    Examples
    --------
    >>> from collections import Counter
    >>> account([{"n_records": 3, "n_valid": 2, "n_rejected": 1, "reasons": Counter(a=1)}])
    {'read': 3, 'stored': 2, 'rejected': 1, 'reasons': {'a': 1}}
    """
    read = sum(int(result["n_records"]) for result in results)
    stored = sum(int(result["n_valid"]) for result in results)
    rejected = sum(int(result["n_rejected"]) for result in results)
    if expected is not None and read != expected:
        raise RuntimeError(f"bigdl internal error: {what} listed ({expected}) != {what} read ({read}).")
    check_accounting(read, stored, rejected, what)
    reasons: Counter = Counter()
    for result in results:
        reasons.update(result["reasons"])
    return {"read": read, "stored": stored, "rejected": rejected, "reasons": dict(reasons)}


# ---------------------------------------------------------------- chunk jobs and writes
# The first word of every shuffle seed, so the row order never shares a random stream with the split.
SHUFFLE_STREAM = 0x5348554646  # "SHUFF"


def shuffle_rng(seed: int, *where: int) -> np.random.Generator:
    """The random stream of one step of the seeded row shuffle (``where``: the step and its block or chunk).

    Parameters
    ----------
    seed : int
        The ingest's seed.
    *where : int
        What the stream is for: ``(1, block)`` orders a staged block,
        ``(2,)`` assigns rows to chunks, ``(3, chunk start)`` orders a chunk.

    Returns
    -------
    numpy.random.Generator
    """
    return np.random.default_rng([SHUFFLE_STREAM, int(seed), *(int(value) for value in where)])


def shuffle_rows(n_rows: int, seed: int | None, block: int) -> np.ndarray | None:
    """The order a read task stages a block's ``n_rows`` valid rows in (None: as read, no shuffle).

    With the shuffle on, each block is staged in a seeded random order, so
    that any run of its staged rows is a random sample of the block; the
    write plan (:func:`chunk_jobs`) then takes one such run of every block
    for each chunk.

    Parameters
    ----------
    n_rows : int
    seed : int or None
        The ingest's shuffle seed; None when the shuffle is off.
    block : int
        The block's index (its staging file number).

    Returns
    -------
    numpy.ndarray of int64 or None
    """
    if seed is None:
        return None
    return shuffle_rng(seed, 1, block).permutation(n_rows)


def chunk_jobs(counts: Sequence[int], rows_per_chunk: int, ids: Sequence | None = None, *,
               shuffle_seed: int | None = None) -> list[tuple[int, list[tuple]]]:
    """For each store chunk, the ``(piece id, from, to)`` staged row ranges it holds.

    Parameters
    ----------
    counts : sequence of int
        Rows of each staged piece (a block, a batch, a segment), in store order.
    rows_per_chunk : int
        Rows per store chunk.
    ids : sequence, optional
        The id of each piece (its staging file number); default: its position.
    shuffle_seed : int, optional
        Spread every piece's rows over all chunks in a seeded random way
        instead of keeping them in order: chunk ``k`` takes from each piece a
        number of rows drawn from the multivariate hypergeometric distribution
        (the counts a uniformly random permutation of all rows would give),
        as one run of the piece's staged rows, which the read tasks staged in
        random order (:func:`shuffle_rows`).  With the rows of each chunk
        permuted when written (:func:`write_chunk`), the store's order is a
        uniformly random permutation of the input, and every task still
        reads each staged row once.  The plan holds at most one range per
        piece and chunk.

    Returns
    -------
    list of (int, list of tuple)
        ``(first row of the chunk, pieces)`` per chunk; every chunk but the
        last holds exactly ``rows_per_chunk`` rows, so each write task writes one
        whole aligned chunk.

    Examples
    --------
    >>> chunk_jobs([3, 0, 4], rows_per_chunk=5)
    [(0, [(0, 0, 3), (2, 0, 2)]), (5, [(2, 2, 4)])]
    """
    ids = list(range(len(counts))) if ids is None else list(ids)
    if shuffle_seed is not None:
        return _shuffled_chunk_jobs(np.asarray(counts, dtype=np.int64), rows_per_chunk, ids, shuffle_seed)
    starts = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)
    n_rows = int(starts[-1])
    jobs = []
    for start in range(0, n_rows, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_rows)
        pieces = []
        first = int(np.searchsorted(starts, start, side="right") - 1)
        for number in range(first, len(counts)):
            piece_start, piece_stop = int(starts[number]), int(starts[number + 1])
            if piece_start >= stop:
                break
            low, high = max(start, piece_start), min(stop, piece_stop)
            if high > low:
                pieces.append((ids[number], low - piece_start, high - piece_start))
        jobs.append((start, pieces))
    return jobs


def _shuffled_chunk_jobs(counts: np.ndarray, rows_per_chunk: int, ids: list, seed: int) -> list:
    n_rows = int(counts.sum())
    starts = list(range(0, n_rows, rows_per_chunk))
    capacity = np.array([min(rows_per_chunk, n_rows - start) for start in starts], dtype=np.int64)
    rng = shuffle_rng(seed, 2)
    jobs: list[tuple[int, list[tuple]]] = [(start, []) for start in starts]
    for number, n_piece in enumerate(counts.tolist()):
        if n_piece == 0:
            continue
        # The piece's rows among the chunks' remaining places, as a random permutation would put them.
        taken = rng.multivariate_hypergeometric(capacity, n_piece)
        capacity -= taken
        low = 0
        for chunk in np.flatnonzero(taken).tolist():
            high = low + int(taken[chunk])
            jobs[chunk][1].append((ids[number], low, high))
            low = high
    return jobs


def write_chunk(root: str, start: int, arrays: dict[str, np.ndarray], *,
                shuffle_seed: int | None = None) -> np.ndarray:
    """Write one whole store chunk of every array in ``arrays``; return its rows per split.

    Runs inside a write task.

    Parameters
    ----------
    root : str
        The (temporary) store.
    start : int
        The chunk's first row.
    arrays : dict of str to numpy.ndarray
        The chunk's values of each array (``X``, ``split``, ...).
    shuffle_seed : int, optional
        Write the chunk's rows in a seeded random order (the same for every
        array), so rows gathered piece by piece are mixed within the chunk.

    Returns
    -------
    numpy.ndarray of int, shape (3,)
        The ``np.bincount`` of the chunk's ``split``: what the store's
        ``chunk_split_counts`` attribute holds (and what the dashboard counts
        as rows stored).
    """
    import zarr

    stop = start + len(arrays["split"])
    if shuffle_seed is not None:
        order = shuffle_rng(shuffle_seed, 3, start).permutation(stop - start)
        arrays = {name: values[order] for name, values in arrays.items()}
    group = zarr.open_group(zarr_store(root), mode="r+")
    check_whole_chunk(group["X"], start, stop)
    for name, values in arrays.items():
        group[name][start:stop] = values
    return np.bincount(arrays["split"], minlength=3)


# ---------------------------------------------------------------- rejects
def empty_message(source, accounting: dict, examples: list[str], hint: str = "", what: str = "rows") -> str:
    """Why an ingest would store nothing: no row at all, or every row rejected (with the first few).

    Parameters
    ----------
    source : str, path or list
        The input, for the message.
    accounting : dict
        ``read`` and ``reasons``.
    examples : list of str
        The first rejects as text.
    hint : str, optional
        Advice appended to the message.
    what : str, default "rows"
        The unit.

    Returns
    -------
    str
    """
    if accounting["read"] == 0:
        return f"The input {source!r} holds no data {what}."
    reasons = ", ".join(f"{count} x {reason}" for reason, count in accounting["reasons"].items())
    return (f"All {accounting['read']} {what} were rejected, so nothing would be stored (input {source!r}): "
            f"{reasons}. First ones: {'; '.join(examples[:3])}.{' ' + hint if hint else ''}")


def public_empty_message(accounting: dict) -> str:
    """:func:`empty_message` for the dashboard: the counts and reason families, no rejected row's text.

    Parameters
    ----------
    accounting : dict
        ``read`` and ``reasons``.

    Returns
    -------
    str
    """
    if accounting["read"] == 0:
        return "The input holds no data."
    reasons = ", ".join(f"{count} x {reason}" for reason, count in accounting["reasons"].items())
    return f"All {accounting['read']} rows or items were rejected, so nothing would be stored: {reasons}."


REJECT_TYPES = {"row": "int64", "record": "int64", "line": "Int64", "class": "int64"}


def write_rejects_part(root: str | os.PathLike, name: str, frame: pd.DataFrame) -> int:
    """Write ``frame`` as ``<store>/rejects/<name>.parquet`` (creating the folder).

    Parameters
    ----------
    root : str or path
        The (temporary) store.
    name : str
        The part's name, without suffix.
    frame : pandas.DataFrame
        The rejects: ``source``, ``row`` or ``record``, ``line``, ``raw``, ``reason``...

    Returns
    -------
    int
        Rows written.
    """
    import io

    types = {column: dtype for column, dtype in REJECT_TYPES.items() if column in frame.columns}
    buffer = io.BytesIO()
    frame.astype(types).to_parquet(buffer, index=False)
    # One write of the whole file: a single PUT on object storage.
    write_bytes(join(os.fspath(root), "rejects", f"{name}.parquet"), buffer.getvalue())
    return len(frame)


# ---------------------------------------------------------------- the skeleton
class IngestSteps:
    """The steps one store kind plugs into :func:`run_ingest`.

    Subclasses set the attributes and implement the methods without a
    default; hooks with a default do nothing.  Methods run on the client;
    ``read_task`` and ``write_task`` are plain functions (picklable) run in
    Dask tasks.

    Attributes
    ----------
    kind : str
        The store kind (``"tabular"``, ``"image"``, ``"sequence"``); also the
        key of its reason families.
    name : str
        A short name of the source, for progress bars.
    read_stage : str
        Name of the read stage on progress bars and the dashboard.
    rows_per_chunk : int
        Rows per store chunk (set by :meth:`fit` at the latest).
    compression : str
        Blosc codec of the arrays, recorded in the store's attributes.
    inputs : tuple
        The input paths: the store may not be one of them, lie inside one or contain one.
    shuffle_seed : int or None
        Store the rows in a seeded random order across the whole input (see
        :func:`chunk_jobs`); None keeps the input order.  A kind that
        shuffles also stages each block in the order :func:`shuffle_rows`
        gives and passes the seed to :func:`write_chunk`.
    """

    kind: str = ""
    inputs: tuple = ()
    shuffle_seed: int | None = None
    name: str = ""
    read_stage: str = "read"
    rows_per_chunk: int = 0
    compression: str = "lz4"
    read_task: Callable = None
    write_task: Callable = None

    def prepare(self, staging: Path) -> None:
        """Before reading: e.g. copy sources tasks cannot read in place into ``staging``.

        Parameters
        ----------
        staging : path
            The staging folder inside the temporary store.
        """

    def read_jobs(self, staging: str) -> list[tuple]:
        """The arguments of each read task (one per input block).

        Parameters
        ----------
        staging : str
            The staging folder.

        Returns
        -------
        list of tuple
        """
        raise NotImplementedError

    def account(self, read_results: list[dict]) -> dict:
        """Row accounting of the read results (see :func:`account`).

        Parameters
        ----------
        read_results : list of dict
            The read tasks' results.

        Returns
        -------
        dict
            ``read``, ``stored``, ``rejected`` and ``reasons``.
        """
        return account(read_results)

    def empty_message(self, accounting: dict, read_results: list[dict], staging: Path) -> str:
        """Why nothing would be stored (every row rejected, or no row read).

        Parameters
        ----------
        accounting : dict
        read_results : list of dict
        staging : path
            Where the staged rejects are, for examples.

        Returns
        -------
        str
        """
        raise NotImplementedError

    def fit(self, read_results: list[dict], accounting: dict) -> None:
        """Learn what the write tasks need (preprocessing, statistics) from the read results.

        Parameters
        ----------
        read_results : list of dict
        accounting : dict
        """

    def extra_stages(self, run: Callable, staging: str, read_results: list[dict], accounting: dict) -> dict:
        """Stages between fit and write (sequences sort).

        Parameters
        ----------
        run : callable
            ``run(stage, task, jobs)`` runs one task per job like the skeleton's own stages.
        staging : str
        read_results : list of dict
        accounting : dict

        Returns
        -------
        dict
            The accounting, updated if rows left ``stored`` for ``rejected``.
        """
        return accounting

    def pieces(self, read_results: list[dict]) -> tuple[list, list[int]]:
        """The staged pieces in store order (default: the read blocks).

        Parameters
        ----------
        read_results : list of dict

        Returns
        -------
        (list, list of int)
            The pieces' ids and their row counts.
        """
        return list(range(len(read_results))), [int(result["n_valid"]) for result in read_results]

    def create_arrays(self, root: Path, n_rows: int) -> None:
        """Create the store's empty arrays for ``n_rows`` rows, in chunks of ``rows_per_chunk`` rows.

        Parameters
        ----------
        root : path
            The temporary store.
        n_rows : int
        """
        raise NotImplementedError

    def write_job(self, root: str, staging: str, start: int, pieces: list[tuple]) -> tuple:
        """The arguments of the write task of the chunk starting at ``start``.

        Parameters
        ----------
        root : str
            The temporary store.
        staging : str
        start : int
            The chunk's first row.
        pieces : list of tuple
            ``(piece id, from, to)``: the staged rows the chunk holds (see :func:`chunk_jobs`).

        Returns
        -------
        tuple
        """
        raise NotImplementedError

    def write_rejects(self, root: Path, staging: Path, read_results: list[dict], accounting: dict,
                      run: Callable) -> None:
        """Write ``<store>/rejects/*.parquet``.

        Parameters
        ----------
        root : path
            The temporary store.
        staging : path
        read_results : list of dict
        accounting : dict
        run : callable
            As for :meth:`extra_stages`.
        """

    def attributes(self, accounting: dict) -> dict:
        """The kind's own store attributes, passed to :func:`bigdl.store._write.finish_store`.

        Parameters
        ----------
        accounting : dict
            The final row accounting.

        Returns
        -------
        dict
        """
        raise NotImplementedError


def row_order(shuffle_seed: int | None) -> dict:
    """The store's ``row_order`` attribute: ``{"shuffled": bool, "seed": int or None}``.

    Parameters
    ----------
    shuffle_seed : int or None

    Returns
    -------
    dict
    """
    return {"shuffled": shuffle_seed is not None, "seed": shuffle_seed}


@contextlib.contextmanager
def _staging_folder(temporary):
    """The staging area of an ingest: ``_staging`` inside the temporary store, local or on object storage.

    On object storage the workers then need nothing but the bucket (see
    :mod:`bigdl.ingest._staging`); ``BIGDL_STAGING_DIR`` (a folder every
    worker sees at the same path, or a URL) moves the staging of a remote
    store there instead, to spare the round trips.  A staging area outside
    the store is removed at the end, one inside it before the commit.
    """
    import tempfile
    import uuid

    if not is_remote(temporary):
        staging = Path(temporary) / "_staging"
        staging.mkdir()
        yield staging
        return
    folder = os.environ.get("BIGDL_STAGING_DIR") or None
    if folder is None:
        staging = join(temporary, "_staging")
    elif is_remote(folder):
        staging = join(folder, f"bigdl-staging-{uuid.uuid4().hex}")
    else:
        staging = tempfile.mkdtemp(prefix="bigdl-staging-", dir=folder)
    try:
        yield staging
    finally:
        remove_tree(staging)


def run_ingest(steps: IngestSteps, store: str | os.PathLike, *, overwrite: bool, progress: bool,
               client=None) -> Dataset:
    """Run the ingest pipeline with one kind's ``steps``; return the committed store, opened.

    Parameters
    ----------
    steps : IngestSteps
        The kind's steps, parameters already validated and sources planned.
    store : str or path
        Where the store goes; written to a temporary sibling and committed when complete.
    overwrite, progress, client
        As in :func:`bigdl.ingest.tabular`.

    Returns
    -------
    Dataset

    Raises
    ------
    EmptyResultError
        Every row (or item) was rejected, or the input is empty.
    StoreExistsError
        ``store`` exists and ``overwrite`` is False.
    StorePathError
        ``store`` is an input, lies inside one or contains one.
    """
    started = time.perf_counter()

    def run(stage: str, task: Callable, jobs: list[tuple]) -> list:
        # The task prefix names the stage on the dashboard ("bigdl-ingest-read", ...).
        return run_tasks(f"bigdl-ingest-{stage}", task, jobs, desc=f"ingest {steps.name}: {stage}",
                         progress=progress, client=client)

    remote = is_remote(store)
    with atomic_store(store, overwrite=overwrite, inputs=steps.inputs) as temporary, ingest_job(
            display(store) if remote else Path(store).absolute(), temporary, uncounted=("_staging", LOCK_NAME)), \
            _staging_folder(temporary) as staging:
        steps.prepare(staging)
        read_results = run(steps.read_stage, steps.read_task, steps.read_jobs(str(staging)))
        accounting = steps.account(read_results)
        if accounting["stored"] == 0:
            raise EmptyResultError(steps.empty_message(accounting, read_results, staging),
                                   public=public_empty_message(accounting))
        steps.fit(read_results, accounting)
        accounting = steps.extra_stages(run, str(staging), read_results, accounting)
        check_accounting(accounting["read"], accounting["stored"], accounting["rejected"])
        ids, counts = steps.pieces(read_results)
        steps.create_arrays(temporary, int(sum(counts)))
        chunk_split_counts = run("write", steps.write_task,
                                 [steps.write_job(str(temporary), str(staging), start, pieces)
                                  for start, pieces in chunk_jobs(counts, steps.rows_per_chunk, ids,
                                                                  shuffle_seed=steps.shuffle_seed)])
        steps.write_rejects(temporary, staging, read_results, accounting, run)
        if not remote:
            shutil.rmtree(staging)
        elif str(staging).startswith(str(temporary)):
            remove_tree(staging)  # not part of the committed version
        attributes = steps.attributes(accounting)
        finish_store(temporary, kind=steps.kind, accounting=accounting, chunk_split_counts=chunk_split_counts,
                     compression=steps.compression, ingest_seconds=round(time.perf_counter() - started, 3),
                     row_order=row_order(steps.shuffle_seed), **attributes)
    return open_store(store)
