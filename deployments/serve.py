"""The single-box alternative to a server + work pool + worker: one long-running process that serves the
deployments (the nightly one and the weekly merge of the pool indexes on their cron schedules) and runs their flow
runs itself.

    DATAENGINE_LABELLED_GT=/data/labelled/annotations/val.json DATAENGINE_INCOMING=/data/incoming \
        .venv/bin/python deployments/serve.py [--cron "0 2 * * *"] [--timezone Europe/Berlin]

It still talks to a Prefect API (PREFECT_API_URL, e.g. `prefect server start --host 127.0.0.1`) for the UI and
schedules; trigger a manual run with
`prefect deployment run 'mine_hard_cases/mine-hard-cases' --params '{"mining": {"budget": 100}}'`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from prefect import serve  # noqa: E402
from prefect.schedules import Cron  # noqa: E402

from flows.merge_recent import merge_recent  # noqa: E402
from flows.mine_hard_cases import mine_hard_cases  # noqa: E402
from flows.nightly import nightly  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cron", default="0 2 * * *", help="nightly schedule (default: 02:00)")
    parser.add_argument("--merge-cron", default="0 6 * * 0",
                        help="weekly merge of the pool indexes' recent vectors (default: Sundays 06:00)")
    parser.add_argument("--timezone", default="Europe/Berlin", help="time zone of the schedule")
    parser.add_argument("--gt-json", default=os.environ.get("DATAENGINE_LABELLED_GT"),
                        help="labelled set, COCO json (default: $DATAENGINE_LABELLED_GT)")
    parser.add_argument("--incoming", default=os.environ.get("DATAENGINE_INCOMING"),
                        help="folder or s3:// prefix of new imagery (default: $DATAENGINE_INCOMING)")
    parser.add_argument("--hold-for-review", action="store_true",
                        help="each night's selection waits for a person to curate and export it in the review app "
                             "(`dataengine ui`, Nights) instead of being exported by the night")
    args = parser.parse_args(argv)
    if not args.gt_json or not args.incoming:
        parser.error("--gt-json and --incoming (or $DATAENGINE_LABELLED_GT and $DATAENGINE_INCOMING) are needed")
    serve(
        nightly.to_deployment(name="nightly", schedule=Cron(args.cron, timezone=args.timezone),
                              parameters={"images": args.incoming, "gt_json": args.gt_json,
                                          "hold_for_review": args.hold_for_review}),
        merge_recent.to_deployment(name="merge-recent-pool-index",
                                   schedule=Cron(args.merge_cron, timezone=args.timezone)),
        mine_hard_cases.to_deployment(name="mine-hard-cases", parameters={"gt_json": args.gt_json}),
    )


if __name__ == "__main__":
    main()
