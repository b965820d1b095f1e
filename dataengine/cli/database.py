"""`dataengine fdb`."""

from __future__ import annotations

from dataengine.cli.options import links_out_arg, print_refused, store_config


def add_parser(sub) -> None:
    fdb = sub.add_parser("fdb", help="the MongoDB feature database: status, start, stop, ingest",
                         description="Manage the feature database (the 'haystack' of images, detections, features).")
    fdb_sub = fdb.add_subparsers(dest="fdb_command", metavar="ACTION", required=True)
    fdb_sub.add_parser("status", help="start or attach to the database and print counts per collection",
                       description="Start or attach to the database and print the number of records in each "
                                   "collection, quarantined images among them.").set_defaults(func=run_status)
    fdb_sub.add_parser("start", help="start the embedded mongod (if not already running)",
                       description="Start the embedded mongod on 127.0.0.1; reuse it if it is already running."
                       ).set_defaults(func=run_start)
    fdb_sub.add_parser("stop", help="stop the embedded mongod cleanly",
                       description="Shut the embedded mongod down cleanly (its data stays in the data home)."
                       ).set_defaults(func=run_stop)
    ingest = fdb_sub.add_parser("ingest", help="register the images of a folder (unreadable ones are quarantined)",
                                description="Register every image under a folder. Known images are skipped "
                                            "without being read; unreadable ones are quarantined with a reason.")
    ingest.add_argument("images", help="folder of images (searched recursively)")
    links_out_arg(ingest)
    ingest.add_argument("--split", default="pool", help="train, val or pool (default: pool, the unlabelled pool)")
    ingest.add_argument("--source", default="local", help="where the images come from, e.g. a drive id")
    ingest.add_argument("--labelled", action="store_true", help="the images have ground truth")
    ingest.set_defaults(func=run_ingest)


def run_status(args) -> int:
    from flows.database import store_status

    status = store_status(store_config())
    where = "DATAENGINE_MONGODB_URI"
    if status.embedded:
        where = f"embedded mongod at 127.0.0.1:{status.embedded.port}, data in {status.embedded.dbpath}"
    print(f"feature database '{status.name}' ({where})")
    for name, count in status.counts.items():
        print(f"  {name:<20} {count:>10,}")
    return 0


def run_start(args) -> int:
    from flows.database import start_embedded

    server = start_embedded(store_config())
    if server is None:
        print("DATAENGINE_MONGODB_URI is set: the engine uses that server, there is nothing to start")
        return 0
    print(f"embedded mongod running at 127.0.0.1:{server.port}, data in {server.dbpath}")
    return 0


def run_stop(args) -> int:
    from flows.database import stop_embedded

    print("embedded mongod stopped" if stop_embedded(store_config()) else "no embedded mongod was running")
    return 0


def run_ingest(args) -> int:
    from flows.database import ingest_folder

    ingested = ingest_folder(store_config(), args.images, allow_links_out=args.allow_links_out, source=args.source,
                             split=args.split, labelled=args.labelled)
    print(f"{ingested.listed} files under {args.images}: {ingested.report}")
    print_refused(ingested.refused, ingested.report.quarantined)
    return 0
