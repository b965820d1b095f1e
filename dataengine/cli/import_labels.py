"""`dataengine import-labels`."""

from __future__ import annotations

import sys

from dataengine.cli.options import store_config


def add_parser(sub) -> None:
    imp = sub.add_parser(
        "import-labels", help="import the team's labels (COCO json, CVAT xml/zip, or a Label Studio project) for an exported batch",
        description="Import labels for a batch: they become ground truth in fdb as a new label version (earlier "
                    "versions are kept), the images are marked labelled and the batch closed. Unknown categories, "
                    "images not in the batch, boxes outside the image and empty files are refused with the record "
                    "named; nothing is written unless the whole file is valid. The corrections of a review batch "
                    "(`dataengine review-labels`) also become the next version of the labelled set it was cut "
                    "from, which evaluation, mining and retraining then read (the older versions are kept).")
    imp.add_argument("labels", nargs="?", default=None,
                     help="COCO json, CVAT annotations.xml, or a CVAT export zip")
    imp.add_argument("--from", dest="source", default=None, metavar="labelstudio://HOST:PORT/PROJECT",
                     help="pull the completed annotations of the batch from the Label Studio project it was pushed "
                          "to (token from DATAENGINE_LABELSTUDIO_TOKEN); images nobody has labelled yet are "
                          "listed and wait for the next pull")
    imp.add_argument("--batch", required=True, help="the batch id printed by `dataengine export` or `dataengine review-labels`")
    imp.set_defaults(func=run)


def run(args) -> int:
    if (args.labels is None) == (args.source is None):
        print("error: give either a label file or --from labelstudio://HOST:PORT/PROJECT", file=sys.stderr)
        return 2
    return import_and_print(args.batch, labels=args.labels, source=args.source)


def import_and_print(batch_id: str, labels: str | None = None, source: str | None = None) -> int:
    """The labels imported (`flows.labelling.import_batch_labels`) and what changed printed; what `review-labels
    --import` does too."""
    from flows.labelling import IMPORT_REFUSALS, SERVER_REFUSALS, import_batch_labels

    try:
        imported = import_batch_labels(store_config(), batch_id, labels=labels, source=source)
    except IMPORT_REFUSALS + SERVER_REFUSALS as exc:  # invalid labels are 2, the server's refusal 3
        print(f"nothing imported: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, SERVER_REFUSALS) else 2
    report = imported.report
    if report.unchanged:
        print(f"batch {report.batch_id}: nothing changed on the server since label version {report.label_version} "
              f"({report.images} images, {report.annotations} annotations); nothing written")
    else:
        print(f"batch {report.batch_id}: label version {report.label_version}, {report.images} images, "
              f"{report.annotations} annotations" + (f", {len(report.unlabelled)} images without labels"
                                                     if report.unlabelled else ""))
    if source is not None and report.unlabelled:
        shown = ", ".join(report.unlabelled[:10]) + (" ..." if len(report.unlabelled) > 10 else "")
        print(f"not labelled yet, left for the next pull ({len(report.unlabelled)}): {shown}")
    if imported.review is not None:
        version = imported.review
        changes = ", ".join(f"{n} {k}" for k, n in version.get("changes", {}).items() if k != "images")
        print(f"review batch {batch_id}: {changes or 'no label changed'}")
        print(f"labelled set version {version['version']}: {version['path']} (the older versions are kept; "
              "evaluation, mining and retraining read this one from now on)")
    return 0
