"""The one-way data flow is enforced, not hoped for: import-linter's contracts in pyproject.toml hold on this tree,
and an import against them (module-level or inside a function) breaks them, with the offending line named."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
PACKAGES = ["dataengine", "flows", "tasks", "jobs", "mining", "annotation_export", "fdb", "detectors", "storage", "records"]


def lint(root: Path) -> subprocess.CompletedProcess:
    # import-linter reads the packages from the working directory first, so a copy is linted as it stands.
    return subprocess.run([str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_the_layering_contracts_hold():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    # The model side writes nothing: a function-level import of the store is as wrong as a module-level one.
    ("detectors/model.py", "def _sneak():\n    from fdb.store import connect\n    return connect\n",
     "detectors is not allowed to import fdb"),
    # The store knows no model.
    ("fdb/images.py", "from detectors.checkpoint import load_checkpoint\n", "fdb is not allowed to import detectors"),
    # Mining never runs a model, not even through torch directly.
    ("mining/queries.py", "def _sneak():\n    import torch\n    return torch\n", "mining is not allowed to import torch"),
    # The review app runs no model, and leans on no flow.
    ("dataengine/ui/views.py", "def _sneak():\n    from detectors.model import build_model\n    return build_model\n",
     "dataengine.ui is not allowed to import detectors"),
    ("dataengine/ui/app.py", "from flows import nightly\n", "dataengine.ui is not allowed to import flows"),
    # The ground floor stands on nothing of the project.
    ("storage/uris.py", "from annotation_export import formats\n", "storage is not allowed to import annotation_export"),
    # Tasks and jobs do not read the environment: the edges pass configs down.
    ("jobs/detect.py", "from dataengine.config import store_config\n", "jobs is not allowed to import dataengine.config"),
    # A job never reaches up to the Prefect tasks that wrap it.
    ("jobs/retrain.py", "from tasks.mine import mine\n", "jobs is not allowed to import tasks"),
    # The command line calls flows: a command that reaches past them to the store (even inside a function), or to
    # a stage's code beside its config, breaks the contract.
    ("dataengine/cli/models.py", "def _sneak():\n    from fdb import models\n    return models\n",
     "dataengine.cli is not allowed to import fdb"),
    ("dataengine/cli/mine.py", "from mining.selection import select_hard_cases\n",
     "dataengine.cli is not allowed to import mining"),
    # Only `dataengine ui` serves the review app.
    ("dataengine/cli/search.py", "from dataengine.ui.app import AppSettings\n",
     "dataengine.cli is not allowed to import dataengine.ui"),
    # No cycles: the batch is made below the export that ships it, and the server's push builds on the batch.
    ("annotation_export/formats.py", "def _sneak():\n    from annotation_export.export import export_batch\n"
     "    return export_batch\n", "No cycles are allowed in annotation_export"),
    ("fdb/store.py", "from fdb.images import ingest_images\n", "No cycles are allowed in fdb"),
])
def test_an_import_against_the_flow_breaks_the_contracts(tmp_path, module, line, broken):
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    assert lint(tmp_path).returncode == 0  # the copy holds, as the tree does
    with open(tmp_path / module, "a") as fh:
        fh.write("\n\n" + line)
    result = lint(tmp_path)
    assert result.returncode != 0 and broken in result.stdout, result.stdout[-3000:]


# The store owns its collections: outside fdb/, nobody names one or queries it raw.
RAW_ACCESS = re.compile(r"\.db\[|\b\w+\.(images|detections|features|feature_layers|selections|errors|runs|models|"
                        r"indexes|exports|labels|scheduled_runs|label_errors|labelled_sets|queries)\.(find|find_one|insert_one|insert_many|update_one|"
                        r"update_many|distinct|count_documents|delete_many|aggregate)\(|\bprocessed_by\b")


def test_only_the_store_touches_its_collections():
    offenders = []
    for name in PACKAGES:
        if name == "fdb":
            continue
        for path in sorted((REPO / name).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                if RAW_ACCESS.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "raw collection access outside fdb/:\n" + "\n".join(offenders)
    assert RAW_ACCESS.search('docs = fdb.images.find({"status": "ok"})')  # the check itself can fail


# One word, one meaning: a class name is defined once in the project, so a record and the app's answer built from
# it (or a mining record and the app's row of it) cannot pass for each other in a reader's head or an import.
def class_definitions(root: Path) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for name in PACKAGES:
        for path in sorted((root / name).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef):
                    where.setdefault(node.name, []).append(str(path.relative_to(root)))
    return where


def test_each_class_name_is_defined_once(tmp_path):
    twice = {name: paths for name, paths in class_definitions(REPO).items() if len(paths) > 1}
    assert not twice, f"class names defined more than once: {twice}"
    # The check itself can fail: a second SelectedImage, as the app once restated the record's.
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "__init__.py").write_text("class SelectedImage:\n    pass\n")
    (tmp_path / "dataengine").mkdir()
    (tmp_path / "dataengine" / "schemas.py").write_text("class SelectedImage:\n    pass\n")
    assert class_definitions(tmp_path)["SelectedImage"] == ["dataengine/schemas.py", "records/__init__.py"]
