"""The `dataengine` command line. Each subcommand is a thin shell over plain functions in the project's folders."""

from __future__ import annotations

import argparse
import sys
import time

DESCRIPTION = """\
gaze data engine: find the images your detector gets wrong, and queue the ones most like them for labelling.

The loop: detect (Mask R-CNN with FC feature taps) -> store features in MongoDB -> find false positives against
COCO ground truth -> mine look-alikes with an Annoy index -> export to CVAT / COCO -> retrain and compare.

State lives in the data home ($DATAENGINE_HOME, default ~/.local/share/dataengine). The feature database is an
embedded mongod started on 127.0.0.1 on first use, unless $DATAENGINE_MONGODB_URI names another server.
"""


def _cmd_fdb_status(args) -> int:
    from fdb.store import connect

    fdb = connect()
    where = fdb.server.uri if fdb.server else "DATAENGINE_MONGODB_URI"
    if fdb.server:
        where = f"embedded mongod at 127.0.0.1:{fdb.server.port}, data in {fdb.server.dbpath}"
    print(f"feature database '{fdb.db.name}' ({where})")
    for name, count in fdb.counts().items():
        print(f"  {name:<20} {count:>10,}")
    return 0


def _cmd_fdb_start(args) -> int:
    from dataengine import config
    from fdb.server import EmbeddedMongo

    if config.mongodb_uri():
        print("DATAENGINE_MONGODB_URI is set: the engine uses that server, there is nothing to start")
        return 0
    server = EmbeddedMongo(config.data_home() / "mongodb").start()
    print(f"embedded mongod running at 127.0.0.1:{server.port}, data in {server.dbpath}")
    return 0


def _cmd_fdb_stop(args) -> int:
    from dataengine import config
    from fdb.server import EmbeddedMongo

    stopped = EmbeddedMongo(config.data_home() / "mongodb").stop()
    print("embedded mongod stopped" if stopped else "no embedded mongod was running")
    return 0


def _cmd_fdb_ingest(args) -> int:
    from fdb.images import ingest_images, list_images
    from fdb.store import connect

    fdb = connect()
    uris = list_images(args.images)
    report = ingest_images(fdb, uris, source=args.source, split=args.split, labelled=args.labelled)
    print(f"{len(uris)} files under {args.images}: {report}")
    for uri, reason in report.quarantined:
        print(f"  quarantined {uri}: {reason}")
    return 0


def _cmd_demo(args) -> int:
    from flows.demo import run_demo

    return run_demo(quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataengine", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run the end-to-end loop on embedded synthetic street scenes",
                          description="Run the whole loop on the embedded default data and print what it did.")
    demo.add_argument("--quick", action="store_true", help="a shorter run, for a first look")
    demo.set_defaults(func=_cmd_demo)

    fdb = sub.add_parser("fdb", help="the MongoDB feature database: status, start, stop, ingest",
                         description="Manage the feature database (the 'haystack' of images, detections, features).")
    fdb_sub = fdb.add_subparsers(dest="fdb_command", metavar="ACTION", required=True)
    fdb_sub.add_parser("status", help="start or attach to the database and print counts per collection",
                       description="Start or attach to the database and print the number of records in each "
                                   "collection, quarantined images among them.").set_defaults(func=_cmd_fdb_status)
    fdb_sub.add_parser("start", help="start the embedded mongod (if not already running)",
                       description="Start the embedded mongod on 127.0.0.1; reuse it if it is already running."
                       ).set_defaults(func=_cmd_fdb_start)
    fdb_sub.add_parser("stop", help="stop the embedded mongod cleanly",
                       description="Shut the embedded mongod down cleanly (its data stays in the data home)."
                       ).set_defaults(func=_cmd_fdb_stop)
    ingest = fdb_sub.add_parser("ingest", help="register the images of a folder (unreadable ones are quarantined)",
                                description="Register every image under a folder. Known images are skipped "
                                            "without being read; unreadable ones are quarantined with a reason.")
    ingest.add_argument("images", help="folder of images (searched recursively)")
    ingest.add_argument("--split", default="pool", help="train, val or pool (default: pool, the unlabelled pool)")
    ingest.add_argument("--source", default="local", help="where the images come from, e.g. a drive id")
    ingest.add_argument("--labelled", action="store_true", help="the images have ground truth")
    ingest.set_defaults(func=_cmd_fdb_ingest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted; everything written so far is kept, and a re-run resumes", file=sys.stderr)
        return 130
    if args.command == "demo":
        print(f"done in {time.monotonic() - start:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
