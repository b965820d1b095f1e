"""`dataengine export`."""

from __future__ import annotations

from dataengine.cli.options import add_config_args, config_from_args, store_config


def add_parser(sub) -> None:
    from annotation_export.config import ExportConfig

    export = sub.add_parser(
        "export", help="export a selection as a labelling batch: CVAT 1.1 + COCO 1.0 with pre-annotations",
        description="Turn a selection into a labelling batch: CVAT for images 1.1 (annotations.xml) and COCO 1.0 "
                    "(annotations/instances_default.json) with the model's predictions as pre-annotations, the "
                    "images, and a manifest (CSV and JSON) saying why each image was chosen. The target is a "
                    "local folder or s3://bucket/prefix (endpoint, region and credentials from the environment: "
                    "DATAENGINE_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION). "
                    "The same batch exported twice gives byte-identical annotation files. Or a Label Studio "
                    "project, labelstudio://HOST:PORT/PROJECT_TITLE (created if missing): one task per image with "
                    "the model's detections as predictions and the reason it was chosen; the token comes from "
                    "DATAENGINE_LABELSTUDIO_TOKEN, and the images are staged under the server's local-files "
                    "document root (DATAENGINE_LABELSTUDIO_DOCUMENT_ROOT, else LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT). "
                    "Pushing again adds no task twice.")
    export.add_argument("--selection", required=True, help="selection id, as printed by `dataengine mine`")
    export.add_argument("--to", required=True,
                        help="a folder, s3://bucket/prefix, or labelstudio://HOST:PORT/PROJECT_TITLE")
    add_config_args(export, ExportConfig)
    export.add_argument("--model", default=None, help="model whose predictions pre-annotate (default: the production "
                                                      "model if it processed every image, else the selection's)")
    export.set_defaults(func=run)


def run(args) -> int:
    import sys

    from annotation_export.config import ExportConfig
    from flows.labelling import EXPORT_REFUSALS, SERVER_REFUSALS, export_selection

    try:
        result = export_selection(store_config(), args.selection, args.to, config_from_args(ExportConfig, args),
                                  model_version=args.model)
    except SERVER_REFUSALS + EXPORT_REFUSALS as exc:  # the server's refusal is 3, a batch that cannot be made 2
        print(f"error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, SERVER_REFUSALS) else 2
    print(f"batch {result.batch_id}: {result.location}")
    if result.server:
        s = result.server
        print(f"  project {s['project']!r} (id {s['project_id']}) on {s['base_url']}: {s['tasks_added']} tasks "
              f"added, {s['tasks_present']} already there")
        print(f"  staged: {s['staged']}")
    for key, value in result.counts.items():
        print(f"  {key}: {value}")
    images = [f for f in result.files if f.startswith("images/")]
    for f in result.files:
        if not f.startswith("images/"):
            print(f"  {f}")
    print(f"  images/ ({len(images)} files)")
    return 0
