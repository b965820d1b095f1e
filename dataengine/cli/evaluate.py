"""`dataengine evaluate`."""

from __future__ import annotations

from dataengine.cli.options import data_args, model_args, store_config


def add_parser(sub) -> None:
    evaluate = data_args(sub.add_parser(
        "evaluate", help="print the pycocotools bbox/segm table of a model on a dataset split",
        description="Evaluate a model with pycocotools (bbox, and segm where the data has masks): mAP, "
                    "mAP50, mAP75, per-class AP; --json also writes the PR curves."))
    evaluate.add_argument("--split", default="val", help="annotation file to evaluate on (default val)")
    model_args(evaluate)
    evaluate.add_argument("--json", default=None, help="write all metrics, PR curves included, to this file")
    evaluate.set_defaults(func=run)


def run(args) -> int:
    import json

    from flows.evaluate import evaluate_model

    scored = evaluate_model(store_config(), args.data, args.split, args.images, model_version=args.model,
                            checkpoint=args.checkpoint)
    print(f"model {scored.model_version} on {args.split} of {args.data} ({scored.images} images"
          + (f"; labels: {scored.labels}, corrected by review" if scored.corrected else "") + ")")
    print(scored.table)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(scored.metrics, fh, indent=1)
        print(f"metrics with PR curves written to {args.json}")
    return 0
