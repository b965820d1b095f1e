"""Shared fixtures: a real mongod on a free loopback port for the whole session, a fresh database per test."""

from __future__ import annotations

import os
import uuid

import pymongo
import pytest

from fdb.server import EmbeddedMongo
from fdb.store import FeatureDB


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
def data_home(tmp_path, monkeypatch):
    """An isolated data home, so nothing a test writes lands in the user's."""
    monkeypatch.setenv("DATAENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATAENGINE_MONGODB_URI", raising=False)
    return tmp_path / "home"
