"""Running work on Dask and reporting it: tasks, long jobs on workers, progress events, job reports.

Used by every layer that computes on the cluster (ingest, store verification,
training, estimators, search, explanations); it imports nothing of bigdl
above :mod:`bigdl.errors`.  It stays light: the scheduler imports the event
topics for the dashboard plugin.
"""

from bigdl.runtime._events import (INGEST_TOPIC, TRAIN_TOPIC, BatchLossReporter, IngestJob, current_ingest_job,
                                   ingest_job)
from bigdl.runtime._tasks import active_client, observe_tasks, run_on_workers, run_tasks, task_runner

__all__ = ["INGEST_TOPIC", "TRAIN_TOPIC", "BatchLossReporter", "IngestJob", "current_ingest_job", "ingest_job",
           "active_client", "observe_tasks", "run_on_workers", "run_tasks", "task_runner"]
