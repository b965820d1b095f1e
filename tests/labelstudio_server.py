"""A real Label Studio server for the tests, from its own virtualenv (`.venv-labelstudio`, made by install.sh).

Why a template database: the first start of a new data dir runs Label Studio's migrations, which took minutes on a
busy two-core machine. install.sh runs them once (`python tests/labelstudio_server.py prepare`) into
`.venv-labelstudio/data-template-<version>`; each test session copies that folder and starts on the copy, so a
session starts from an empty, migrated server and leaves nothing behind for the next.

Why the legacy token: the user and its token come from the environment (`LABEL_STUDIO_USERNAME`, `_PASSWORD`,
`_USER_TOKEN`) on the first start of a data dir; Label Studio 1.23 refuses legacy tokens ("legacy token
authentication has been disabled for this organization") unless the organisation was created with
`--enable-legacy-api-token`. The tests start with it, and also exercise a personal access token (a JWT refresh
token, made with POST /api/token/), which is what a real team's server hands out.

Run by hand: `python tests/labelstudio_server.py start` prints the URL and token and serves until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-labelstudio"
VERSION = "1.23.2"
TEMPLATE = VENV / f"data-template-{VERSION}"
USERNAME = "engine@example.com"
PASSWORD = "engine-test-password"
TOKEN = "dataengine-test-token-0123456789abcdef"  # a legacy token, set on the session's first start


def installed() -> bool:
    return (VENV / "bin" / "label-studio").exists()


def _env(data_dir: Path, files_root: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        # Nothing leaves the machine: no check for a newer version, no analytics, and no error reports to the
        # Sentry project Label Studio names by default (SENTRY_DSN unset means theirs; empty means none).
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
    })
    if files_root is not None:
        env.update({"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                    "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
                    "LABEL_STUDIO_USERNAME": USERNAME, "LABEL_STUDIO_PASSWORD": PASSWORD,
                    "LABEL_STUDIO_USER_TOKEN": TOKEN})
    return env


def prepare(log=print) -> Path:
    """The migrated template data dir, made once (`label-studio version` migrates a data dir, then exits)."""
    if (TEMPLATE / "label_studio.sqlite3").exists():
        return TEMPLATE
    if not installed():
        raise RuntimeError(f"no Label Studio in {VENV}: run ./install.sh")
    tmp = TEMPLATE.with_name(TEMPLATE.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.monotonic()
    subprocess.run([str(VENV / "bin" / "label-studio"), "version"], env=_env(tmp), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        tmp.rename(TEMPLATE)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"Label Studio {VERSION}: database migrated in {time.monotonic() - start:.0f} s -> {TEMPLATE}")
    return TEMPLATE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    port: int
    token: str
    files_root: Path  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    data_dir: Path
    proc: subprocess.Popen
    started_in: float  # seconds from the process start to GET /health answering 200

    def stop(self) -> None:
        """SIGINT to the server's own process group (it was started in a new session), then SIGKILL."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start(workdir: Path, timeout: float = 600.0) -> Server:
    """Start Label Studio on a free loopback port over a copy of the template data dir under `workdir`; returns
    once GET /health answers."""
    template = prepare()
    data_dir, files_root = workdir / "data", workdir / "files"
    shutil.copytree(template, data_dir)
    files_root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = open(workdir / "label-studio.log", "wb")
    began = time.monotonic()
    # --internal-host is the bind address (--host is only the public name); loopback only.
    proc = subprocess.Popen([str(VENV / "bin" / "label-studio"), "start", "-p", str(port), "--no-browser",
                             "--internal-host", "127.0.0.1", "--enable-legacy-api-token"],
                            env=_env(data_dir, files_root), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() - began > timeout:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            tail = (workdir / "label-studio.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Label Studio did not answer /health on {url} within {timeout:.0f} s:\n{tail}")
        time.sleep(0.5)
    return Server(url, port, TOKEN, files_root, data_dir, proc, time.monotonic() - began)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "prepare"
    if command == "prepare":
        prepare()
    elif command == "start":
        import tempfile

        server = start(Path(tempfile.mkdtemp(prefix="labelstudio-")))
        print(f"Label Studio at {server.url} (token {server.token}, files under {server.files_root}); "
              f"up in {server.started_in:.1f} s; Ctrl-C stops it")
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            server.stop()
    else:
        sys.exit(f"usage: {sys.argv[0]} [prepare|start]")
