"""`dataengine review-labels`."""

from __future__ import annotations

import argparse
import sys

from dataengine.cli.options import (MATCH_FLAGS, add_config_args, config_from_args, labelled_set, model_args,
                                    store_config)


def add_parser(sub) -> None:
    from detectors.config import TrainConfig
    from mining.config import LabelErrorConfig, MatchConfig

    review = sub.add_parser(
        "review-labels", help="find suspected label errors and send them back to the team for correction",
        description="Judge a labelled COCO set with the model's predictions on the images it never trained on: "
                    "a confident prediction on no label (possible_missing), of another class on a label "
                    "(possible_wrong_class), a sloppy box (possible_bad_box), a label nothing supports "
                    "(possible_spurious). Each suspect is scored and stored in fdb with its evidence, and the "
                    "suspected images are exported as a CVAT 1.1 + COCO 1.0 batch holding the current labels "
                    "(source manual, origin=label) and the disagreeing predictions (source auto, "
                    "origin=prediction), with a manifest saying what is suspected and why. The corrected file, "
                    "imported with --import, becomes a new version of the labelled set (the old one is kept) "
                    "that evaluation, mining and retraining then use. Mining leaves suspected label errors out "
                    "of its queries by default (`dataengine mine --keep-label-errors` to include them).")
    review.add_argument("--gt", default=None, help="COCO json of the labelled images; default: the last one mined with")
    review.add_argument("--images", default=None, help="image folder of --gt (default: beside the json)")
    model_args(review)
    add_config_args(review, LabelErrorConfig)
    add_config_args(review, MatchConfig, flags=MATCH_FLAGS)
    review.add_argument("--folds", type=int, default=0, metavar="K",
                        help="the labelled set is the training set: train K models, each without one fold, and "
                             "judge every image with the one that never saw it (k-fold; default: judge with --model, "
                             "on the images it never trained on)")
    review.add_argument("--preset", default="small", help="with --folds: the fold models' preset (default small)")
    review.add_argument("--steps", type=int, default=TrainConfig.steps,
                        help=f"with --folds: training steps per fold model (default {TrainConfig.steps})")
    review.add_argument("--to", default=None, help="a folder or s3://bucket/prefix for the review batch "
                                                   "(default: exports/ in the data home)")
    review.add_argument("--dry-run", action="store_true", help="judge and record, export nothing")
    review.add_argument("--show", type=int, default=15, help="suspects to print (default 15)")
    review.add_argument("--import", dest="import_labels", metavar="FILE", default=None,
                        help="import the team's corrections (COCO json, CVAT xml or zip) of a review batch: the "
                             "same as `dataengine import-labels FILE --batch B`")
    review.add_argument("--batch", default=None, help="with --import: the review batch id")
    review.set_defaults(func=run)


def run(args) -> int:
    from records.coco import load_coco
    from jobs.context import newest_labels

    if args.import_labels:
        if not args.batch:
            print("--import needs --batch (the review batch id printed by the export)", file=sys.stderr)
            return 2
        from dataengine.cli import import_labels

        return import_labels.run(argparse.Namespace(labels=args.import_labels, batch=args.batch))
    gt, images = labelled_set(args)
    if gt is None:
        return 2
    store = store_config()
    ground_truth = load_coco(newest_labels(store, gt), image_dir=images)
    judges = _judges(args, store, ground_truth)
    return _judge_and_export(args, store, ground_truth, judges)


def _judges(args, store, ground_truth) -> str | list[str]:
    """The model whose predictions judge the labels, or with --folds the k models that each never saw a fold."""
    from jobs.context import checkpoint_of, connection, resolve_version

    if args.folds:
        from detectors.config import TrainConfig
        from jobs.label_folds import fold_judges_under

        print(f"training {args.folds} out-of-fold judges ({args.preset} preset, {args.steps} steps each)")
        return fold_judges_under(store.home, connection(store), ground_truth, args.folds, TrainConfig(steps=args.steps),
                                 args.preset, progress=True)
    from jobs.detect import detect_labelled_set

    version = resolve_version(store, args.model, args.checkpoint)
    detect_labelled_set(connection(store), checkpoint_of(store, version), ground_truth, progress=True)
    return version


def _judge_and_export(args, store, ground_truth, judges: str | list[str]) -> int:
    from pathlib import Path

    from annotation_export.review import export_review_batch
    from mining.config import LabelErrorConfig, MatchConfig
    from mining.label_errors import find_label_errors
    from jobs.context import connection

    fdb = connection(store)
    report = find_label_errors(fdb, judges, ground_truth, config_from_args(LabelErrorConfig, args),
                               config_from_args(MatchConfig, args))
    who = f"{len(judges)} fold models" if isinstance(judges, list) else f"model {judges}"
    print(f"{who} on {ground_truth.path}:")
    print(report.table())
    for suspect in report.label_errors[:args.show]:
        print(f"  {suspect.suspicion:.2f} {suspect.type:<21} {suspect.uri}\n        {suspect.why}")
    if not sum(report.counts().values()):
        print("no suspected label errors: nothing to review")
        return 0
    if args.dry_run:
        return 0
    exported = export_review_batch(fdb, ground_truth, judges, args.to or Path(store.home) / "exports",
                                   params_key=report.params_key)
    counts = exported.counts
    print(f"review batch {exported.batch_id}: {exported.location} ({counts['images']} images, "
          f"{counts['labels']} labels, {counts['predictions']} disagreeing predictions)")
    print(f"when the corrections are back: dataengine import-labels FILE --batch {exported.batch_id}")
    return 0
