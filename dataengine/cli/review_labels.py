"""`dataengine review-labels`."""

from __future__ import annotations

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
    from detectors.config import TrainConfig
    from flows.review_labels import review_labels
    from mining.config import LabelErrorConfig, MatchConfig

    if args.import_labels:
        if not args.batch:
            print("--import needs --batch (the review batch id printed by the export)", file=sys.stderr)
            return 2
        from dataengine.cli.import_labels import import_and_print

        return import_and_print(args.batch, labels=args.import_labels)
    gt, images = labelled_set(args)
    if gt is None:
        return 2
    if args.folds:
        print(f"training {args.folds} out-of-fold judges ({args.preset} preset, {args.steps} steps each)")
    review = review_labels(store_config(), gt, images, config_from_args(LabelErrorConfig, args),
                           config_from_args(MatchConfig, args), model_version=args.model, checkpoint=args.checkpoint,
                           folds=args.folds, fold_train=TrainConfig(steps=args.steps), preset=args.preset,
                           target=args.to, dry_run=args.dry_run)
    _print_review(review, args.show)
    return 0


def _print_review(review, show: int) -> None:
    report, judges = review.report, review.judges
    who = f"{len(judges)} fold models" if isinstance(judges, list) else f"model {judges}"
    print(f"{who} on {review.labelled_set}:")
    print(report.table())
    for suspect in report.label_errors[:show]:
        print(f"  {suspect.suspicion:.2f} {suspect.type:<21} {suspect.uri}\n        {suspect.why}")
    if not sum(report.counts().values()):
        print("no suspected label errors: nothing to review")
    if review.exported is None:
        return
    exported = review.exported
    counts = exported.counts
    print(f"review batch {exported.batch_id}: {exported.location} ({counts['images']} images, "
          f"{counts['labels']} labels, {counts['predictions']} disagreeing predictions)")
    print(f"when the corrections are back: dataengine import-labels FILE --batch {exported.batch_id}")
