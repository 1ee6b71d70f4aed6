"""Same seed, same store, same settings: bitwise the same weights in process and on any worker (issue 14.2).

What must match is pinned here: ``torch_threads`` (the number of intra-op
threads can change how convolutions and large reductions are split, and so
the last bits of the results), the device type (CPU), the seed and the
initial weights.  What need not match is varied: where the loop runs (this
process or a worker process of a real ``LocalCluster``) and the worker's
glibc allocator settings (``start_local``'s defaults, or distributed's
aggressive trimming with every buffer mapped anew), which move every
buffer's address and alignment.  The MLP has dropout, so the torch
generator's stream on the worker is compared too.
"""

from __future__ import annotations

import os

import pytest
import torch

import bigdl
from bigdl.models import MLP
from bigdl.train import Trainer

# Far from both bigdl's and distributed's defaults: every allocation of 64 KiB or more is its own
# mapping, and the heap is given back as soon as anything is free at its top.
OTHER_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _fit(store, on_cluster: bool) -> dict:
    torch.manual_seed(0)
    model = MLP(store.n_features, [32, 32], store.n_classes, dropout=0.2)
    trainer = Trainer(model, epochs=2, batch_size=64, seed=7, torch_threads=1, progress=False, on_cluster=on_cluster)
    trainer.fit(store)
    return trainer.model.state_dict()


def _assert_same_weights(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    different = [name for name in left if not torch.equal(left[name], right[name])]
    assert different == []


def _worker_allocator(client) -> list[dict]:
    keys = list(bigdl.cluster.WORKER_ENVIRONMENT)
    return list(client.run(lambda: {key: os.environ.get(key) for key in keys}).values())


@pytest.fixture(scope="module")
def other_allocator_client():
    """A one-worker LocalCluster whose worker runs with :data:`OTHER_ALLOCATOR`, set the way a user would."""
    import dask
    from distributed.client import _del_global_client

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"), **OTHER_ALLOCATOR)
    # The nanny writes its pre-spawn environment into this process's os.environ; a later start_local would
    # take the values left there for the user's own (tests/cluster/test_trim.py then saw no heap kept).
    saved = {key: os.environ.get(key) for key in OTHER_ALLOCATOR}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        client = bigdl.cluster.start_local(n_workers=1, memory_limit="1GiB", dashboard_address=None, quiet=True)
    _del_global_client(client)  # tests choose their client with as_current()
    try:
        yield client
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_in_process_and_on_workers_give_the_same_weights(classification_store, cluster_client,
                                                         other_allocator_client):
    in_process = _fit(classification_store, on_cluster=False)
    assert _worker_allocator(cluster_client) == [bigdl.cluster.WORKER_ENVIRONMENT] * 2
    with cluster_client.as_current():
        on_default_cluster = _fit(classification_store, on_cluster=True)
    assert _worker_allocator(other_allocator_client) == [OTHER_ALLOCATOR]
    with other_allocator_client.as_current():
        on_other_allocator = _fit(classification_store, on_cluster=True)
    _assert_same_weights(in_process, on_default_cluster)
    _assert_same_weights(in_process, on_other_allocator)
    # Trained, not the initial weights: the comparison means something.
    torch.manual_seed(0)
    initial = MLP(classification_store.n_features, [32, 32], classification_store.n_classes, dropout=0.2).state_dict()
    assert not all(torch.equal(initial[name], in_process[name]) for name in initial)


def test_an_in_process_fit_leaves_the_callers_generator_alone(classification_store):
    trainer = Trainer(MLP(classification_store.n_features, [8], classification_store.n_classes, dropout=0.2),
                      epochs=1, batch_size=256, seed=7, torch_threads=1, progress=False, on_cluster=False)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    trainer.fit(classification_store)
    assert torch.equal(torch.get_rng_state(), before)
