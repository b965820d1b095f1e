"""`dataengine review-labels`."""

from __future__ import annotations

import sys

from dataengine.cli.options import MATCH_FLAGS, add_config_args, config_from_args, labelled_set, model_args
from dataengine.config import store_config


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
                        help="import the team's corrections (COCO json, CVAT xml or zip) of a review batch")
    review.add_argument("--batch", default=None, help="with --import: the review batch id")
    review.set_defaults(func=run)


def run(args) -> int:
    from annotation_export.importer import LabelImportError
    from mining.config import LabelErrorConfig, MatchConfig
    from tasks import (
        detect_labelled,
        export_review,
        fold_judges,
        import_review,
        judge_labels,
        resolve_model,
    )

    store = store_config()
    if args.import_labels:
        if not args.batch:
            print("--import needs --batch (the review batch id printed by the export)", file=sys.stderr)
            return 2
        try:
            result = import_review.fn(store, args.import_labels, args.batch)
        except LabelImportError as exc:
            print(f"nothing imported: {exc}", file=sys.stderr)
            return 2
        changes = ", ".join(f"{n} {k}" for k, n in result["changes"].items() if k != "images")
        print(f"review batch {result['batch_id']}: label version {result['label_version']}, {result['images']} images "
              f"({changes})")
        print(f"labelled set version {result['version']}: {result['labelled_set']} (the older versions are kept; "
              "evaluation, mining and retraining read this one from now on)")
        return 0
    gt, images = labelled_set(args)
    if gt is None:
        return 2
    if args.folds:
        from detectors.config import TrainConfig

        print(f"training {args.folds} out-of-fold judges ({args.preset} preset, {args.steps} steps each)")
        version = fold_judges.fn(store, gt, images, args.folds, TrainConfig(steps=args.steps), args.preset,
                                 progress=True)
    else:
        version = resolve_model.fn(store, args.model, args.checkpoint)
        detect_labelled.fn(store, version, gt, images, progress=True)
    judged = judge_labels.fn(store, version, gt, images, config_from_args(LabelErrorConfig, args),
                             config_from_args(MatchConfig, args))
    who = f"{len(version)} fold models" if isinstance(version, list) else f"model {version}"
    print(f"{who} on {judged['labelled_set']}:")
    print(judged["table"])
    for uri, kind, suspicion, why in judged["top"][:args.show]:
        print(f"  {suspicion:.2f} {kind:<21} {uri}\n        {why}")
    if not sum(judged["counts"].values()):
        print("no suspected label errors: nothing to review")
        return 0
    if args.dry_run:
        return 0
    exported = export_review.fn(store, version, gt, images, args.to, params_key=judged["params_key"])
    print(f"review batch {exported['batch_id']}: {exported['location']} ({exported['images']} images, "
          f"{exported['labels']} labels, {exported['predictions']} disagreeing predictions)")
    print(f"when the corrections are back: dataengine review-labels --import FILE --batch {exported['batch_id']}")
    return 0
