"""The retry policy of the tasks that read and write the store, S3 or files."""

from __future__ import annotations

from prefect.cache_policies import NONE

from fdb import StoreUnavailable
from fdb.models import PromotionConflict


def worth_retrying(task, task_run, state) -> bool:
    """Transient errors are retried; a database that did not answer for the client's whole server-selection
    window (30 s, longer than a replica-set election or an embedded restart), or an external one that does not
    answer at all, is gone: fail fast instead of waiting through three more such windows."""
    from pymongo.errors import ServerSelectionTimeoutError  # noqa: PLC0415

    try:
        state.result(raise_on_failure=True)
    except (ServerSelectionTimeoutError, StoreUnavailable, PromotionConflict):
        return False  # (a conflict is a decision to make again, not a transient failure)
    except Exception:  # noqa: BLE001 - any other failure goes to the retry policy
        return True
    return True


# No input caching: every task is idempotent against fdb anyway.
# No tags: Prefect asks its server for the tags' concurrency slots before every tagged run, and after a detection
# chunk had both cores that write waited ~2 s behind the ephemeral server's SQLite: 40 % of a 64-image chunk on 2
# cores (benchmarks/nightly_bench.py's real night). GPU work is bounded by the Dask workers or a work pool instead.
IO_RETRIES = dict(retries=3, retry_delay_seconds=[2, 10, 30], cache_policy=NONE, retry_condition_fn=worth_retrying)
