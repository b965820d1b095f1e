"""Shared fixtures: a real mongod on a free loopback port for the whole session, a fresh database per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pymongo
import pytest

from fdb.server import EmbeddedMongo
from fdb.store import FeatureDB
from storage import s3 as s3mod


@pytest.fixture(scope="session")
def mongod(tmp_path_factory):
    server = EmbeddedMongo(tmp_path_factory.mktemp("mongod")).start()
    yield server
    server.stop()


@pytest.fixture()
def mongo_client(mongod):
    client = pymongo.MongoClient(mongod.uri, serverSelectionTimeoutMS=30_000, tz_aware=True)
    yield client
    client.close()


@pytest.fixture()
def fdb(mongo_client):
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield FeatureDB(mongo_client[name])
    mongo_client.drop_database(name)


@pytest.fixture()
def store(mongod, fdb, tmp_path):
    """The `StoreConfig` naming the test's database, as the edges pass it down to tasks."""
    from fdb import StoreConfig

    return StoreConfig(home=str(tmp_path / "home"), uri=mongod.uri, db_name=fdb.db.name)


@pytest.fixture()
def data_home(tmp_path, monkeypatch):
    """An isolated data home, so nothing a test writes lands in the user's."""
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATAENGINE_MONGODB_URI", raising=False)
    return tmp_path / "home"


# ---------------------------------------------------------------------------------------------------- S3 server
MOTO = Path(sys.executable).parent / "moto_server"


def run_at_once(target, args) -> None:
    """`target(arg)` for every arg, each in its own thread started together, all joined: a race, as the tests
    that press one button from several places need it."""
    threads = [threading.Thread(target=target, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto(env_extra: dict | None = None):
    port = _free_port()
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
            return proc, url
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def moto_url():
    proc, url = _start_moto()
    yield url
    _stop(proc)


@pytest.fixture()
def s3env(moto_url, monkeypatch):
    """Credentials and endpoint in the environment (as in production), and a fresh bucket."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("DATAENGINE_S3_ENDPOINT_URL", moto_url)
    bucket = f"exports-{time.time_ns()}"
    s3mod.s3_client().create_bucket(Bucket=bucket)
    return bucket


# ---------------------------------------------------------------------------------------------------- engine
@pytest.fixture()
def store_env(mongod, fdb, tmp_path, monkeypatch):
    """The environment a command reads, naming the test's database and a data home of its own."""
    monkeypatch.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
    monkeypatch.setenv("DATAENGINE_DB", fdb.db.name)
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def engine(store_env, fdb, tmp_path):
    """A tiny dataset and an untrained tiny model registered in the test database the tasks connect to."""
    import torch

    from detectors.checkpoint import load_checkpoint, save_checkpoint
    from detectors.model import build_model, preset_config
    from detectors.synthetic import CATEGORIES, generate
    from jobs.context import register_checkpoint

    data = tmp_path / "data"
    generate(data, n_train=0, n_val=3, n_pool=6, seed=5, width=128, height=96, progress=False)
    torch.manual_seed(0)
    cfg = preset_config("small", [c["name"] for c in CATEGORIES], min_size=96, max_size=128, box_score_thresh=0.0,
                        box_detections_per_img=20)
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg, "tiny-v1", "h"))
    register_checkpoint(fdb, checkpoint, first_is_production=True)
    return data


@pytest.fixture(scope="session")
def prefect_backend():
    """A temporary Prefect server and database for the flows under test (prefect_test_harness)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def tiny_demo(prefect_backend, mongod, tmp_path_factory):
    """One tiny demo for the session, as a Prefect flow (a whole one costs a minute of CI): a seed model, the pool
    detected, a mined and a random batch exported, labelled by the generator's ground truth and compared, in the
    demo's own database. Its arm runs train in two worker processes spawned from inside a Prefect task.
    tests/test_compare.py checks what it made and retrains on its batches (in a copy of its database);
    tests/test_ui.py adds a night and a mining run to it and browses it. `counts` is what the database held right
    after the demo, whatever ran since."""
    from flows.demo import demo

    tmp = tmp_path_factory.mktemp("demo")
    base = f"test_demo_{uuid.uuid4().hex[:10]}"
    sizes = {"train": 6, "val": 4, "pool": 10, "test": 4, "preset": "small", "seed_steps": 3, "seed_patience": None,
             "arm_steps": 1, "seeds": [0], "control_seeds": None, "workers": 2, "budget": 3, "k": 3, "width": 128,
             "height": 96, "detections_per_image": 20}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATAENGINE_MONGODB_URI", mongod.uri)
        mp.setenv("DATAENGINE_DB", base)
        mp.setenv("DATAENGINE_HOME", str(tmp / "home"))
        result = demo(sizes=sizes, progress=False, root=str(tmp / "demo"))
    client = pymongo.MongoClient(mongod.uri, serverSelectionTimeoutMS=30_000, tz_aware=True)
    db = client[result["database"]]
    counts = {"labelled exports": db.exports.count_documents({"status": "labelled"}),
              "labels": db.labels.count_documents({}),
              "arm models": db.models.count_documents({"parent": {"$ne": None}})}
    yield {"result": result, "database": result["database"], "base": base, "home": tmp / "home", "root": tmp / "demo",
           "tmp": tmp, "counts": counts}
    client.drop_database(result["database"])
    client.close()


# ---------------------------------------------------------------------------------------------------- Label Studio
@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory):
    """A real Label Studio server on 127.0.0.1 for the whole session (`tests/labelstudio_server.py`: its own
    virtualenv from install.sh, a copy of the migrated template database, a legacy token enabled). Skipped with
    GAZE_NO_LABELSTUDIO=1 (install.sh then makes no venv), and where the venv is missing outside CI."""
    import labelstudio_server

    if os.environ.get("GAZE_NO_LABELSTUDIO") == "1":
        pytest.skip("GAZE_NO_LABELSTUDIO=1: install.sh was told not to install Label Studio")
    if not labelstudio_server.installed():
        if os.environ.get("CI"):
            pytest.fail(f"no Label Studio in {labelstudio_server.VENV}: install.sh should have made it")
        pytest.skip(f"no Label Studio in {labelstudio_server.VENV}: ./install.sh makes it")
    server = labelstudio_server.start(tmp_path_factory.mktemp("labelstudio"))
    print(f"\nLabel Studio {labelstudio_server.VERSION} answered /health in {server.started_in:.1f} s")
    yield server
    server.stop()
