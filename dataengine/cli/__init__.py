"""The `dataengine` command line: one module per command, each a parser fragment (`add_parser`) and a handler
(`run`) that parses the flags into configs, calls a flow or a plain function of `flows/` and prints its typed
result. Nothing below flows is imported but the configs, the records and the environment (pyproject.toml's
`cli-seams` contract)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from dataengine.cli import (compare, convert_pennfudan, database, demo, detect, evaluate, export, import_labels,
                            mine, models, nightly, reindex, retrain, review_labels, rollout, search, split, synth,
                            train, ui)

DESCRIPTION = """\
gaze data engine: find the images your detector gets wrong, and queue the ones most like them for labelling.

The loop: detect (Mask R-CNN with FC feature taps) -> store features in MongoDB -> type the model's errors against
COCO ground truth -> mine the pool with a strategy (the errors' nearest neighbours in an exact, HNSW or Annoy index;
uncertainty; diversity) -> export to CVAT / COCO -> retrain, compare on a test split, promote if better.

State lives in the data home ($DATAENGINE_HOME, default ~/.local/share/dataengine). The feature database is an
embedded mongod started on 127.0.0.1 on first use, unless $DATAENGINE_MONGODB_URI names another server.
"""

# In the order `--help` lists them: the loop's first steps first.
COMMANDS = (demo, ui, nightly, retrain, compare, models, synth, split, convert_pennfudan, train, evaluate, detect,
            mine, search, export, import_labels, review_labels, reindex, rollout, database)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataengine", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of a failure instead of its one-line message")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Flows run against Prefect's ephemeral server unless PREFECT_API_URL names one. Its telemetry has nothing to
    # reach here, and its first write races the server's start-up ("database is locked" tracebacks).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral server's 20 s start-up limit is missed on a busy 2-core machine (seen in CI: the night then
    # failed before it began). A slow start costs seconds; a missed one costs the run.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted; everything written so far is kept, and a re-run resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # the one failure a user must act on gets a message, not a traceback
        from flows.errors import user_errors

        if args.debug:
            raise
        errors = user_errors()
        if isinstance(exc, errors.unreachable):
            print(f"error: {exc}", file=sys.stderr)
            return 3
        if isinstance(exc, errors.refusals):
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return 2
        if isinstance(exc, errors.store_lost):
            print("error: the feature database stopped answering during the run and did not come back within 30 s. "
                  "Check the server (`dataengine fdb status`), then run the same command again: it resumes where "
                  "it stopped, nothing is duplicated.", file=sys.stderr)
            return 3
        raise
    if args.command == "demo":
        print(f"done in {time.monotonic() - start:.1f}s")
    return code


def _one_line(exc: BaseException) -> str:
    """A refusal's message on one line (a KeyError's repr quotes it: its argument is the message)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split())


if __name__ == "__main__":
    sys.exit(main())
