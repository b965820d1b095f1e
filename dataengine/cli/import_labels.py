"""`dataengine import-labels`."""

from __future__ import annotations

import sys

from dataengine.cli.options import store_config



def add_parser(sub) -> None:
    imp = sub.add_parser(
        "import-labels", help="import the team's labels (COCO json or CVAT xml/zip) for an exported batch",
        description="Import labels for a batch: they become ground truth in fdb as a new label version (earlier "
                    "versions are kept), the images are marked labelled and the batch closed. Unknown categories, "
                    "images not in the batch, boxes outside the image and empty files are refused with the record "
                    "named; nothing is written unless the whole file is valid. The corrections of a review batch "
                    "(`dataengine review-labels`) also become the next version of the labelled set it was cut "
                    "from, which evaluation, mining and retraining then read (the older versions are kept).")
    imp.add_argument("labels", help="COCO json, CVAT annotations.xml, or a CVAT export zip")
    imp.add_argument("--batch", required=True, help="the batch id printed by `dataengine export` or `dataengine review-labels`")
    imp.set_defaults(func=run)


def run(args) -> int:
    from annotation_export.importer import LabelImportError, import_labels
    from annotation_export.review import apply_review
    from fdb import exports
    from jobs.context import connection

    fdb = connection(store_config())
    try:
        report = import_labels(fdb, args.labels, args.batch)
    except LabelImportError as exc:
        print(f"nothing imported: {exc}", file=sys.stderr)
        return 2
    print(f"batch {report.batch_id}: label version {report.label_version}, {report.images} images, "
          f"{report.annotations} annotations" + (f", {len(report.unlabelled)} images without labels"
                                                 if report.unlabelled else ""))
    if exports.is_review(fdb, args.batch):
        version = apply_review(fdb, args.batch)
        changes = ", ".join(f"{n} {k}" for k, n in version.get("changes", {}).items() if k != "images")
        print(f"review batch {args.batch}: {changes or 'no label changed'}")
        print(f"labelled set version {version['version']}: {version['path']} (the older versions are kept; "
              "evaluation, mining and retraining read this one from now on)")
    return 0
