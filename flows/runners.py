"""Where the tasks of a flow run: one machine by default, a Dask cluster when users outgrow it.

- **One machine (default)**: Prefect's thread pool with one worker. Detection chunks then run one after another,
  and torch uses every core for each of them; parallel chunks would only compete for the same cores.
- **Dask** (`prefect-dask`): detection chunks are spread over the cluster's workers, each a separate process (or
  machine) that opens its own MongoDB connection and loads the model once. With `address=None` a local cluster of
  `n_workers` processes is started for the run; give the scheduler's address (`tcp://host:8786`) to use a running
  cluster. Workers on other machines need what the flow's process has: the same code and model checkpoint paths,
  `DATAENGINE_MONGODB_URI` naming a server they can reach (a replica set, e.g.
  `mongodb://db1:27017,db2:27017,db3:27017/?replicaSet=rs0`), and images they can read (`s3://` uris with
  `DATAENGINE_S3_ENDPOINT_URL` / AWS credentials in their environment, or a shared file system).
"""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner


def build_task_runner(dask_address: str | None = None, dask_workers: int = 0, threads_per_worker: int = 1):
    """The default single-machine runner, or a DaskTaskRunner for a cluster at `dask_address` or a local one of
    `dask_workers` processes."""
    if not dask_address and dask_workers <= 0:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner  # noqa: PLC0415 - only needed when scaling out

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": threads_per_worker,
                                          "processes": True, "dashboard_address": None})
