"""`dataengine ui`."""

from __future__ import annotations

import os
import sys

from dataengine.cli.options import store_config


def add_parser(sub) -> None:
    ui = sub.add_parser(
        "ui", help="the review app in the browser: models, errors, queries and neighbours, selections, batches",
        description="Serve the review app over the feature database and print its URL: models and runs with their "
                    "reports; the errors on the labelled set (and suspected label errors) with their crops; a query "
                    "beside its nearest pool neighbours; a selection to curate (accept or reject each image, then "
                    "export: rejected images are left out and the manifest records who rejected what and when); "
                    "batches and what the annotators changed against the pre-annotations. The same data is JSON "
                    "under /api (described at /docs). Bound to 127.0.0.1 by default; any other address needs "
                    "DATAENGINE_UI_TOKEN (at least 16 characters) in the environment.")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    ui.add_argument("--export-to", default=None, help="where the export button ships batches: a folder or "
                                                      "s3://bucket/prefix (default: exports/ in the data home)")
    ui.add_argument("--user", default=None, help="whom decisions are recorded for when the page names no reviewer "
                                                 "(default: the login name)")
    ui.set_defaults(func=run)


def run(args) -> int:
    from dataengine.config import data_home, ui_token
    from dataengine.ui.app import AppSettings
    from dataengine.ui.server import serve

    home = data_home()
    settings = AppSettings(host=args.host, port=args.port, token=ui_token(),
                           export_target=args.export_to or str(home / "exports"), cache_dir=str(home / "ui-cache"),
                           index_root=str(home / "indexes"), **({"user": args.user} if args.user else {}))
    try:
        serve(store_config(), settings, named="DATAENGINE_DB" in os.environ)
    except ValueError as exc:
        print(f"dataengine ui: {exc}", file=sys.stderr)
        return 2
    return 0
