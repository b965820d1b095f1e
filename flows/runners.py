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

A worker that cannot import the project never reports back: it fails while unpickling its task and the scheduler
waits on it for ever. So a flow on Dask first asks every worker to import the project (`check_workers`) and fails
within a minute, naming each worker and what it could not import, before any work is handed out.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os

from prefect import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

# The project's top-level packages that a task imports on a worker when it is unpickled.
PROJECT_PACKAGES = ("records", "storage", "detectors", "fdb", "mining", "annotation_export", "jobs", "tasks", "flows")
# What unpickling a detection chunk imports (the detect task's module, and the job under it): the last step of the
# probe.
TASK_MODULE = "tasks.detect"
PROBE_TIMEOUT_S = 45.0


class ClusterUnusable(RuntimeError):
    """The Dask cluster's workers cannot run the flow's tasks; the message names each worker and the cause."""


def build_task_runner(dask_address: str | None = None, dask_workers: int = 0, threads_per_worker: int = 1):
    """The default single-machine runner, or a DaskTaskRunner for a cluster at `dask_address` or a local one of
    `dask_workers` processes."""
    if not dask_address and dask_workers <= 0:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner  # noqa: PLC0415 - only needed when scaling out

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    # Dask starts its workers with OMP_NUM_THREADS=1 (numpy's default for many small tasks), which would leave a
    # single detection worker on one core of a larger machine: torch takes an equal share of the cores instead.
    torch_threads = str(max(1, (os.cpu_count() or 1) // dask_workers))
    # A local cluster's shutdown logs what it does to its workers (connections closed under a heartbeat, a nanny
    # killing a worker that did not stop in 4 s) as warnings and errors with tracebacks: after a night that
    # succeeded, a user reads those as its failure. A task's own failure still reaches the flow as its exception,
    # with its cause, whatever the cluster logs. `silence_logs` alone is not enough: it quiets the handlers on the
    # "distributed" logger, and under Prefect those records propagate to the root's console handler instead.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    env = {"OMP_NUM_THREADS": torch_threads, "MKL_NUM_THREADS": torch_threads}
    if api_url := prefect_api_url():
        env["PREFECT_API_URL"] = api_url
    return DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": threads_per_worker,
                                          "processes": True, "dashboard_address": None,
                                          "silence_logs": logging.CRITICAL, "env": env})


def prefect_api_url() -> str | None:
    """The Prefect API this process's flow runs report to, for the worker processes of a local cluster.

    Without it each worker, a fresh interpreter, resolves the API on its own: an API set in-process (a test
    harness) never reaches it, and with no API configured at all (a user's laptop: Prefect's temporary server) every
    worker starts a temporary server of its own. That cost each worker ~15 s on two cores, and the task runs were
    recorded on servers that vanished with the workers, not beside their flow run. So the temporary server is
    started here, before the flow, and the flow's run then uses the same one (`SubprocessASGIServer` is one per
    process)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED  # noqa: PLC0415

    url = PREFECT_API_URL.value()
    if url or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return url or None
    from prefect.server.api.server import SubprocessASGIServer  # noqa: PLC0415 - only without a configured API

    server = SubprocessASGIServer()
    server.start()
    return server.api_url


def on_cluster(flow, dask_address: str | None = None, dask_workers: int = 0):
    """`flow` as it is (the single-machine runner its decorator names), or with its tasks on the Dask cluster at
    `dask_address` or on a local one of `dask_workers` processes: what `--dask-address` / `--dask-workers` ask."""
    if not dask_address and dask_workers <= 0:
        return flow
    return flow.with_options(task_runner=build_task_runner(dask_address, dask_workers))


def check_workers(timeout_s: float = PROBE_TIMEOUT_S) -> list[dict]:
    """Inside a flow: when its task runner is a Dask cluster, every worker must import the project's packages as
    the flow's process does; raises `ClusterUnusable` otherwise (or when a worker does not answer in `timeout_s`).
    Returns what each worker said (an empty list on the single-machine runner), and logs how many answered."""
    from prefect.context import FlowRunContext  # noqa: PLC0415

    context = FlowRunContext.get()
    client = getattr(context.task_runner, "client", None) if context else None
    if client is None:
        return []
    workers = probe_cluster(client, timeout_s)
    get_run_logger().info("Dask cluster: %d workers can run the tasks", len(workers))
    return workers


def probe_cluster(client, timeout_s: float = PROBE_TIMEOUT_S) -> list[dict]:
    """Runs `_import_probe` on every worker of a `distributed.Client`'s cluster (outside the task queue, so a
    worker that cannot unpickle tasks still answers) and raises `ClusterUnusable` naming every problem."""
    address = getattr(client.scheduler, "address", "?")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        answers = pool.submit(client.run, _import_probe(), PROJECT_PACKAGES, TASK_MODULE,
                              on_error="return").result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise ClusterUnusable(f"the Dask cluster at {address} did not answer an import check within {timeout_s:.0f} s"
                              " (are its workers alive? `dask worker` logs say why)") from None
    finally:
        pool.shutdown(wait=False)
    if not answers:
        raise ClusterUnusable(f"the Dask cluster at {address} has no workers: start some (`dask worker {address}`)")
    reports, problems = [], []
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            problems.append(f"{worker}: the import check itself failed: {type(answer).__name__}: {answer}")
            continue
        reports.append({"worker": worker, **answer})
        problems += [f"{worker}: {problem}" for problem in answer["problems"]]
    if problems:
        raise ClusterUnusable(f"the Dask cluster at {address} cannot run this flow's tasks:\n  " + "\n  ".join(problems)
                              + "\nEvery worker needs the project installed as in the flow's environment "
                              "(`pip install -e .` or `pip install .` from its pyproject.toml), and nothing on its "
                              "sys.path named like the project's packages.")
    return reports


def _import_probe():
    """The probe, built as a closure so cloudpickle sends it by value: unpickling it needs nothing of the project,
    which is exactly what may be missing on the worker."""

    def probe(packages: tuple[str, ...], task_module: str) -> dict:
        import importlib  # noqa: PLC0415
        import importlib.util  # noqa: PLC0415
        import os  # noqa: PLC0415
        import socket  # noqa: PLC0415
        import sys  # noqa: PLC0415

        problems = []
        for name in packages:
            try:
                spec = importlib.util.find_spec(name)
            except Exception as exc:  # noqa: BLE001 - reported, with its type
                problems.append(f"`{name}` cannot be found: {type(exc).__name__}: {exc}")
                continue
            if spec is None:
                problems.append(f"`{name}` is not installed for {sys.executable}")
            elif spec.origin is None or spec.loader is None or spec.origin == "namespace":
                where = ", ".join(spec.submodule_search_locations or [])
                problems.append(f"`{name}` resolves to the folder {where}, not the project's package: that folder "
                                f"is on sys.path and shadows it")
        if not problems:
            try:
                importlib.import_module(task_module)
            except Exception as exc:  # noqa: BLE001 - reported, with its type
                problems.append(f"importing {task_module} failed: {type(exc).__name__}: {exc}")
        return {"host": socket.gethostname(), "pid": os.getpid(), "python": sys.executable, "problems": problems}

    return probe
