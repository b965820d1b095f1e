"""`dataengine import-labels`."""

from __future__ import annotations

import sys

from dataengine.config import store_config


def add_parser(sub) -> None:
    imp = sub.add_parser(
        "import-labels", help="import the team's labels (COCO json or CVAT xml/zip) for an exported batch",
        description="Import labels for a batch: they become ground truth in fdb as a new label version (earlier "
                    "versions are kept), the images are marked labelled and the batch closed. Unknown categories, "
                    "images not in the batch, boxes outside the image and empty files are refused with the record "
                    "named; nothing is written unless the whole file is valid.")
    imp.add_argument("labels", help="COCO json, CVAT annotations.xml, or a CVAT export zip")
    imp.add_argument("--batch", required=True, help="the batch id printed by `dataengine export`")
    imp.set_defaults(func=run)


def run(args) -> int:
    from annotation_export.importer import LabelImportError, import_labels
    from tasks.context import connection

    try:
        report = import_labels(connection(store_config()), args.labels, args.batch)
    except LabelImportError as exc:
        print(f"nothing imported: {exc}", file=sys.stderr)
        return 2
    print(f"batch {report.batch_id}: label version {report.label_version}, {report.images} images, "
          f"{report.annotations} annotations" + (f", {len(report.unlabelled)} images without labels"
                                                 if report.unlabelled else ""))
    return 0
