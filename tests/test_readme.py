"""The README walked as a user walks it: its commands are read from README.md itself and run in subprocesses, the
`dataengine` script of the venv, from a working directory outside the repository, so a command renamed in the
README or in the code, or a command that crashes, fails here.

- The quick start (`<!-- walk: quick-start -->`): `install.sh` is not run (CI has just run it: `.ci/run`), and the
  test command must be exactly the one CI runs. `dataengine demo` has no size flags (only `--quick`, which still
  takes minutes on two cores), so its `--help` is walked instead; `tests/test_ui.py` runs a tiny demo in-process
  (`flows.demo.demo(sizes=...)`) and checks its data in the app.
- Your own data (`<!-- walk: own-data -->`): every command, end to end, at tiny sizes. The test adds only size
  flags (`ADDED`, checked against `SIZE_FLAGS`) and a free port for the app. The README's placeholders are filled
  from what earlier commands printed (selection and batch ids); the labels files the annotators send back are made
  by the test, with the synthetic generator's ground truth playing the team, and so is the night's `incoming/`
  folder of new images.
- After the demo (`<!-- walk: after-demo -->`): `dataengine ui`, with no `DATAENGINE_DB`, must show the data of
  the newest demo's database. The walk's database is named as `dataengine demo` names its own
  (`<default database>-demo-<configuration>`), so this step meets what a user meets after the demo: the default
  database empty and a demo's beside it.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pymongo

from conftest import _free_port

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent
SCRIPT = ".venv/bin/dataengine"  # how the README calls the command line, from the repository root

# What the test adds to a README command, by subcommand, and nothing else: sizes only (image counts, steps, runs,
# neighbours, budgets, chunk sizes). `FREE_PORT` becomes a free port, so the app never meets another on 8765.
ADDED = {
    "synth": ("--train", "4", "--val", "3", "--pool", "8", "--test", "3"),
    # Four steps leave the seed a few detections above its score threshold, so mining and compare have something
    # to work on (with none, compare's report once crashed: mining/report.py `_plot_pr`, now drawn either way).
    "train": ("--steps", "4", "--batch-size", "1"),
    "mine": ("--k", "3", "--budget", "2"),
    "compare": ("--steps", "1", "--seeds", "0"),
    "nightly": ("--k", "3", "--budget", "2", "--chunk-size", "2"),
    "ui": ("--port", "FREE_PORT"),
}
SIZE_FLAGS = {"--train", "--val", "--pool", "--test", "--steps", "--batch-size", "--k", "--budget", "--seeds",
              "--chunk-size"}
NOT_A_SIZE = {"--port"}  # where the app listens: changes no result
# New scenes for the night: the walk's own `synth` draws seed 0.
NIGHT_IMAGES, NIGHT_SEED = 4, 7
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*_[A-Z]+$")  # MINED_SELECTION, RANDOM_BATCH, ...


# ---------------------------------------------------------------------------------------------------- the README
def walk(name: str) -> list[list[str]]:
    """The commands of the fenced bash block right after `<!-- walk: NAME -->`, one argv per command (comments
    dropped, continued lines joined)."""
    text = README.read_text()
    marker = f"<!-- walk: {name} -->"
    assert marker in text, f"README.md has no {marker}"
    block = re.match(r"\s*```bash\n(.*?)^```", text.split(marker, 1)[1], re.S | re.M)
    assert block, f"no ```bash block right after {marker}"
    commands = [shlex.split(line, comments=True) for line in block[1].replace("\\\n", " ").splitlines()]
    return [argv for argv in commands if argv]


def subcommand(argv: list[str]) -> str:
    assert argv[0] == SCRIPT, f"a README command that is not {SCRIPT}: {shlex.join(argv)}"
    return argv[1]


def test_the_added_flags_are_sizes_and_each_meets_a_readme_command():
    for command, added in ADDED.items():
        flags = set(added[::2])
        assert all(f.startswith("--") for f in flags) and flags <= SIZE_FLAGS | NOT_A_SIZE, (command, added)
    walked = {subcommand(argv) for argv in walk("own-data") + walk("after-demo")}
    assert set(ADDED) <= walked, f"sizes for commands the README no longer has: {set(ADDED) - walked}"


# ---------------------------------------------------------------------------------------------------- quick start
def test_the_quick_start_installs_runs_the_demo_and_the_test_command_ci_runs():
    install, tests = (" ".join(argv) for argv in walk("quick-start"))
    assert install == f"./install.sh && {SCRIPT} demo", install
    assert os.access(REPO / "install.sh", os.X_OK)
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert tests in ci, f"the README's test command {tests!r} is not what .ci/run runs"
    assert tests == ".venv/bin/python -m pytest -q tests"
    # The demo itself takes minutes even with --quick; its command line must exist and parse.
    done = subprocess.run([str(BIN / "dataengine"), "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: dataengine demo"), done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------------- your own data
class User:
    """A user's shell: a working directory outside the repository, the test's data home and database, a Prefect
    home of its own, and nothing that puts the repository on the path."""

    def __init__(self, cwd: Path, env: dict):
        self.cwd, self.env = cwd, env
        self.values: dict[str, str] = {}  # placeholder -> what an earlier command printed
        self.ran: list[str] = []

    def argv(self, readme: list[str]) -> list[str]:
        """The README's command as run: placeholders filled, the sizes of ADDED appended, nothing else."""
        filled = []
        for token in readme:
            if PLACEHOLDER.match(token):
                assert token in self.values, f"{shlex.join(readme)}: no earlier command printed {token}"
                token = self.values[token]
            filled.append(token)
        added = tuple(str(_free_port()) if a == "FREE_PORT" else a for a in ADDED.get(subcommand(readme), ()))
        return [str(BIN / "dataengine"), *filled[1:], *added]

    def run(self, readme: list[str], timeout: float = 300) -> str:
        argv = self.argv(readme)
        start, cpu = time.monotonic(), _children_cpu()
        done = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        self.ran.append(f"{time.monotonic() - start:6.1f} s ({_children_cpu() - cpu:5.1f} s CPU)  "
                        f"{shlex.join(argv[1:])}")
        said = done.stdout + done.stderr
        assert done.returncode == 0, f"`{shlex.join(readme)}` exited {done.returncode}:\n{said[-4000:]}"
        assert "Traceback" not in said, f"`{shlex.join(readme)}` printed a traceback:\n{said[-4000:]}"
        return said


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def user_env(tmp: Path, mongo_uri: str, db_name: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PREFECT_API_URL") and not k.startswith("DATAENGINE_")}
    env.update(DATAENGINE_MONGODB_URI=mongo_uri, DATAENGINE_DB=db_name, DATAENGINE_HOME=str(tmp / "home"),
               PREFECT_HOME=str(tmp / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def value_of(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def new_images_for_the_night(folder: Path, scratch: Path) -> None:
    """Scenes the walk's pool does not hold (another seed), arrived in the night's folder."""
    from detectors.synthetic import generate

    generate(scratch, n_train=0, n_val=0, n_pool=NIGHT_IMAGES, seed=NIGHT_SEED, progress=False)
    folder.mkdir(parents=True)
    for image in sorted((scratch / "images").glob("pool_*.png")):
        shutil.copy(image, folder / image.name)


def the_team_labels(batch_folder: Path, pool_json: Path, out: Path) -> None:
    """The labels file the annotators send back for a batch: the generator's ground truth for its images."""
    from detectors.synthetic import oracle_labels

    oracle_labels(batch_folder / "manifest.json", pool_json, out)


def get_json(url: str) -> dict | list:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def serve_and_ask(user: User, readme: list[str], env: dict, paths: list[str]) -> tuple[list, str]:
    """Start the README's `ui` command, wait until it answers, ask it for `paths` (JSON), stop it as Ctrl-C does.
    The answers and what the command printed."""
    argv = user.argv(readme)
    port = value_of(argv, "--port")
    log = user.cwd / f"ui-{port}.log"
    with open(log, "w") as out:
        app = subprocess.Popen(argv, cwd=user.cwd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=out,
                               stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    answers = [get_json(f"http://127.0.0.1:{port}{p}") for p in paths]
                    break
                except OSError:
                    assert app.poll() is None, f"`{shlex.join(readme)}` exited {app.returncode}:\n{log.read_text()}"
                    assert time.monotonic() < deadline, f"the app did not answer in 120 s:\n{log.read_text()}"
                    time.sleep(0.5)
        finally:
            app.terminate()
            app.wait(30)
    said = log.read_text()
    assert "Traceback" not in said, said
    return answers, said


def test_your_own_data_end_to_end_as_the_readme_says_then_the_app_after_the_demo(mongod, tmp_path):
    start = time.monotonic()
    db_name = f"dataengine-demo-readme-{uuid.uuid4().hex[:10]}"
    client = pymongo.MongoClient(mongod.uri, serverSelectionTimeoutMS=30_000)
    assert not client["dataengine"].images.estimated_document_count(), "the default database must be empty here"
    cwd = tmp_path / "user"
    cwd.mkdir()
    user = User(cwd, user_env(tmp_path, mongod.uri, db_name))
    commands = walk("own-data")
    assert [subcommand(c) for c in commands] == ["synth", "train", "evaluate", "detect", "mine", "export", "export",
                                                 "import-labels", "import-labels", "compare", "models", "nightly",
                                                 "ui"], [shlex.join(c) for c in commands]
    data = cwd / value_of(commands[0], "--out")
    night = next(c for c in commands if subcommand(c) == "nightly")
    new_images_for_the_night(cwd / value_of(night, "--images"), tmp_path / "arrivals")
    exported: dict[str, Path] = {}  # batch id -> its folder
    try:
        for readme in commands[:-1]:
            command = subcommand(readme)
            if command == "import-labels":  # the annotators' file, for the batch the command names
                batch = user.values[value_of(readme, "--batch")]
                labels = readme[2]
                assert not labels.startswith("-"), shlex.join(readme)  # the file comes first, as the README has it
                the_team_labels(exported[batch], data / "annotations" / "pool.json", cwd / labels)
            out = user.run(readme)
            if command == "synth":
                assert {p.stem for p in (data / "annotations").glob("*.json")} >= {"train", "val", "pool", "test"}
            elif command == "train":
                seed = re.search(r"^model version (\S+)$", out, re.M)[1]
            elif command == "evaluate":
                assert "bbox: mAP" in out, out
            elif command == "detect":
                assert re.search(r": (\d+) images, \1 processed, 0 already done, 0 quarantined", out), out
            elif command == "mine":
                user.values["MINED_SELECTION"] = re.search(r"^selection (sel-[0-9a-f]+) ", out, re.M)[1]
                user.values["RANDOM_SELECTION"] = re.search(r"^random arm (rnd-[0-9a-f]+): ", out, re.M)[1]
            elif command == "export":
                batch, where = re.search(r"^batch (batch-[0-9a-f]+): (.+)$", out, re.M).groups()
                exported[batch] = cwd / where
                assert (exported[batch] / "manifest.json").is_file()
                user.values[value_of(readme, "--selection").replace("_SELECTION", "_BATCH")] = batch
            elif command == "import-labels":
                assert re.search(r"^batch batch-[0-9a-f]+: label version 1, ", out, re.M), out
            elif command == "compare":
                report = Path(re.search(r"^report: (.+)$", out, re.M)[1])
                comparison = json.loads((report.parent / "comparison.json").read_text())
                assert comparison["evaluation"]["evaluated_on"] == "test"
                assert set(comparison["arms"]) == {"before", "mined", "random", "control"}
            elif command == "models":
                assert re.search(rf"^production\s+{re.escape(seed)}\s", out, re.M), out
                assert len(re.findall(r"^candidate .* arm ", out, re.M)) == 3, out  # mined, random, control
            elif command == "nightly":
                assert f"detected {NIGHT_IMAGES} new images (0 quarantined) on 2 worker(s)" in out, out
                assert re.search(r"^batch batch-[0-9a-f]+ at ", out, re.M), out
                # The local cluster shuts down quietly: none of its own log lines, no closed-connection errors.
                assert "CommClosedError" not in out and "| distributed." not in out, out[-4000:]
                # One temporary Prefect server, the flow's, which its workers report to (not one each).
                assert out.count("Starting temporary server") == 1, out[-4000:]
                # Each image detected once on the workers, and each detection's vector with it.
                db = client[db_name]
                n_det = db.detections.count_documents({})
                assert db.features.count_documents({"owner_kind": "detection"}) == n_det  # a tiny seed may find none
                assert db.features.count_documents({"owner_kind": "image"}) >= 8 + NIGHT_IMAGES

        # The app over the data just made, as the walk's last command serves it.
        (overview, batches, selections), _ = serve_and_ask(
            user, commands[-1], user.env, ["/api/overview", "/api/batches", "/api/selections"])
        assert overview["production"] == seed
        assert overview["counts"]["images"] >= 8 + NIGHT_IMAGES and overview["counts"]["models"] == 4
        shown = json.dumps([batches, selections])
        for placeholder in ("MINED_SELECTION", "RANDOM_SELECTION", "MINED_BATCH", "RANDOM_BATCH"):
            assert user.values[placeholder] in shown, placeholder

        # After the demo: the README's next command, with no database named, opens the newest demo's.
        (after_demo,) = walk("after-demo")
        env = {k: v for k, v in user.env.items() if k != "DATAENGINE_DB"}
        (overview,), said = serve_and_ask(user, after_demo, env, ["/api/overview"])
        assert f"opening the newest demo's, '{db_name}'" in said, said
        assert overview["production"] == seed
    finally:
        client.drop_database(db_name)
        client.close()
        print(f"README walk: {time.monotonic() - start:.0f} s\n" + "\n".join(user.ran))
