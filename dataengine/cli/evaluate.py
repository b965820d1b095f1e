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

    from detectors.checkpoint import load_checkpoint
    from detectors.evaluate import evaluate_predictions, format_table, predict
    from detectors.pipeline import dataset_split
    from fdb import labelled_sets
    from records.coco import load_coco
    from jobs.context import connection, resolve_checkpoint

    fdb = connection(store_config())
    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else resolve_checkpoint(fdb, args.model)
    dataset = dataset_split(args.data, args.split, args.images)
    newest = labelled_sets.newest_path(fdb, dataset.path)
    corrected = str(newest) != str(dataset.path)
    if corrected:  # a review corrected the split's labels: score against the newest version
        dataset = load_coco(newest, image_dir=dataset.image_dir)
    metrics = evaluate_predictions(dataset, predict(checkpoint.model, dataset))
    print(f"model {checkpoint.version} on {args.split} of {args.data} ({len(dataset)} images"
          + (f"; labels: {newest}, corrected by review" if corrected else "") + ")")
    print(format_table(metrics))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(metrics, fh, indent=1)
        print(f"metrics with PR curves written to {args.json}")
    return 0
