"""Static checks: `ruff check` with pyflakes' rules (pyproject.toml's [tool.ruff]) over the library, the benchmarks
and the tests, clean. An undefined name no test reaches (a command's handler crashing after its work is done) fails
here, not in a user's hands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ruff() -> list[str]:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert found, "ruff is a test dependency (pyproject.toml [test]); install it with ./install.sh"
    return [found]


def test_ruff_finds_nothing():
    result = subprocess.run([*ruff(), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_catches_an_undefined_name(tmp_path):
    # The check is live: the crash issue 45 found (`dataclasses` used, never imported) is what it refuses.
    broken = tmp_path / "train.py"
    broken.write_text("def register(train):\n    return dataclasses.asdict(train)\n")
    result = subprocess.run([*ruff(), "check", "--no-cache", "--config", str(REPO / "pyproject.toml"), str(broken)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "F821" in result.stdout and "dataclasses" in result.stdout
