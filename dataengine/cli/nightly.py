"""`dataengine nightly`."""

from __future__ import annotations

import os
import sys

from dataengine.cli.options import MATCH_FLAGS, add_config_args, config_from_args, links_out_arg


def add_parser(sub) -> None:
    from annotation_export.config import ExportConfig
    from mining.config import MatchConfig, MiningConfig

    night = sub.add_parser(
        "nightly", help="the nightly flow once, now: detect new images, mine, export a batch",
        description="Run the scheduled nightly Prefect flow by hand: images under --images (a folder or an "
                    "s3://bucket/prefix) that the model has not processed are detected into fdb, the pool is "
                    "mined with the model's errors on the labelled set --gt, and the selection is exported to "
                    "--to. A second run with nothing new is a no-op. With --hold-for-review the selection waits "
                    "for a person instead: it is recorded awaiting review and nothing is exported; `dataengine ui` "
                    "lists it under Nights, where its images are accepted or rejected and Export sends the batch "
                    "to the night's --to. While a night waits, later nights detect their images but do not mine. "
                    "With --dask-workers N (a local cluster) or --dask-address tcp://host:8786, detection chunks "
                    "run on Dask workers (see flows/runners.py).")
    night.add_argument("--images", required=True, help="folder or s3:// prefix of new imagery")
    links_out_arg(night)
    night.add_argument("--pattern", default="*", help="file name pattern (default *)")
    night.add_argument("--full-listing", action="store_true",
                       help="list every image under --images, not only those since the last complete night (a "
                            "reconciliation: finds S3 objects written under keys that sort before the mark)")
    night.add_argument("--gt", required=True, help="COCO json of the labelled set (the queries come from it)")
    night.add_argument("--gt-images", default=None, help="image folder of --gt (default: beside the json)")
    night.add_argument("--model", default=None, help="model version (default: the production model)")
    add_config_args(night, MiningConfig)
    add_config_args(night, MatchConfig, flags=MATCH_FLAGS)
    add_config_args(night, ExportConfig, only=["min_score"], flags={"min_score": "--export-min-score"})
    night.add_argument("--to", default=None, help="export target, folder or s3:// prefix (default: "
                                                  "exports/ in the data home)")
    night.add_argument("--hold-for-review", action="store_true",
                       help="record the selection as awaiting review and export nothing: a person curates it and "
                            "presses Export in `dataengine ui` (Nights), which ships it to --to; until then no "
                            "night mines")
    night.add_argument("--chunk-size", type=int, default=64, help="images per detection task (default 64)")
    night.add_argument("--dask-workers", type=int, default=0, help="run detection on a local Dask cluster of N "
                                                                   "worker processes")
    night.add_argument("--dask-address", default=None, help="run detection on this Dask scheduler")
    night.set_defaults(func=run)


def run(args) -> int:
    from annotation_export.config import ExportConfig
    from flows.nightly import nightly
    from flows.runners import on_cluster
    from mining.config import MatchConfig, MiningConfig

    # Checked before the flow starts: a flow that fails logs its traceback, and a wrong path is not a bug.
    for path, what, ok in ((args.images, "image folder", os.path.isdir), (args.gt, "labelled set", os.path.isfile)):
        if path and not (ok(path) or "://" in path):
            print(f"error: no {what} at {path}", file=sys.stderr)
            return 2
    flow = on_cluster(nightly, args.dask_address, args.dask_workers)
    result = flow(images=args.images, gt_json=args.gt, gt_images=args.gt_images, model_version=args.model,
                  pattern=args.pattern, mining=config_from_args(MiningConfig, args),
                  match=config_from_args(MatchConfig, args), export_config=config_from_args(ExportConfig, args),
                  export_to=args.to, chunk_size=args.chunk_size, allow_links_out=args.allow_links_out,
                  full_listing=args.full_listing, hold_for_review=args.hold_for_review)
    detected, mined, exported, review = result.detect, result.mine, result.export, result.review
    print(f"detected {detected.images_processed} new images ({len(detected.quarantined)} quarantined) on "
          f"{len(detected.workers)} worker(s); " + (
              f"selection {mined.selection_id} ({mined.selected} images, strategy {mined.strategy})" if mined else
              f"not mined: night {review.night_id} (selection {review.selection_id}) is "
              f"{review.status.replace('_', ' ')}"))
    if result.held:
        print(f"held for review as night {review.night_id}: nothing exported; accept or reject its images and "
              f"export it in `dataengine ui` (Nights), to {review.target}")
    elif mined is None:
        print("curate and export the waiting night in `dataengine ui` (Nights): nights mine again after that")
    else:
        print(f"batch {exported.batch_id} at {exported.location}" if exported else "nothing exported")
    return 0
