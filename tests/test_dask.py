"""Scale-out as a user runs it: `dataengine nightly` on Dask, from the command line, in a subprocess whose working
directory is not the repository.

Why the earlier in-process test never saw the workers fail: pytest, started as `python -m pytest` from the
repository, has the repository on `sys.path`, and the workers it spawned inherited that path. A regular package on
a `sys.path` entry always wins over a namespace folder, so the project's `storage` beat the `storage/` spill folder
that Dask keeps in the worker's local directory (first on `sys.path`). A user's `dataengine` script has no such
entry: the editable install's meta-path finder was asked only after every path entry, and the spill folder won.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import _free_port, _stop

BIN = Path(sys.executable).parent


def user_env(tmp_path: Path) -> dict:
    """The environment a user's shell has: the test's database (set by `engine`), a Prefect home of its own, and
    nothing that puts the repository on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def run_nightly(engine: Path, tmp_path: Path, *extra: str, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([str(BIN / "dataengine"), "nightly", "--images", str(engine / "images"), "--pattern", "pool_*",
                           "--gt", str(engine / "annotations" / "val.json"), "--k", "3", "--budget", "4", *extra],
                          cwd=tmp_path, env=user_env(tmp_path), capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - start


# The night on a local two-worker cluster, run from the command line as a user runs it, is walked by
# tests/test_readme.py (the README's own `nightly --dask-workers 2`): every image detected once, its vectors with it,
# and a quiet shutdown. Here: the clusters that cannot work.


@pytest.fixture()
def broken_cluster(tmp_path):
    """A running scheduler and one worker whose environment shadows the project's `storage` with a package of the
    same name, as a worker on another machine with another checkout would."""
    shadow = tmp_path / "shadow" / "storage"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**user_env(tmp_path), "PYTHONPATH": str(shadow.parent)}
    scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--no-dashboard"], cwd=tmp_path, env=user_env(tmp_path),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([str(BIN / "dask"), "worker", address, "--host", "127.0.0.1", "--no-dashboard",
                               "--nworkers", "1"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        yield address, shadow
    finally:
        _stop(worker)
        _stop(scheduler)


def test_a_cluster_whose_workers_cannot_import_the_project_fails_the_run_within_a_minute(engine, fdb, tmp_path,
                                                                                          broken_cluster):
    address, shadow = broken_cluster
    done, seconds = run_nightly(engine, tmp_path, "--dask-address", address, timeout=120)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    assert seconds < 60, seconds
    # Prefect logs the failed flow run with its traceback; the command's own last word is the cause, plainly.
    said = done.stderr[done.stderr.rindex("error: "):]
    assert said.startswith(f"error: the Dask cluster at {address} cannot run this flow's tasks"), said
    assert "cannot import name 'read_uri' from 'storage'" in said and str(shadow) in said
    assert fdb.images.count_documents({"processed_by": "tiny-v1"}) == 0  # nothing was handed out


def test_a_worker_sees_the_project_packages_not_a_namespace_folder(tmp_path, monkeypatch):
    """The cause itself: a folder named like a project package, first on `sys.path` (a Dask worker's spill folder
    `storage/`), does not shadow the installed package in a fresh interpreter started outside the repository."""
    (tmp_path / "storage").mkdir()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import storage; "
            "from storage import read_uri; print(storage.__file__)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, env=user_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(os.path.join("storage", "__init__.py"))
