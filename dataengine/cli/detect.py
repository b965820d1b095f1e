"""`dataengine detect`."""

from __future__ import annotations

from dataengine.cli.options import (add_config_args, config_from_args, links_out_arg, model_args, print_refused,
                                    store_config)


def add_parser(sub) -> None:
    from detectors.config import DetectConfig

    detect = sub.add_parser(
        "detect", help="detect over a folder of images, storing detections and features in fdb",
        description="Run the detector over every image under a folder, with feature taps: detections (box, "
                    "score, class, RLE mask), one 1024-d box-head vector per detection and one image vector go "
                    "to fdb. Images this model already processed are skipped; unreadable ones are quarantined.")
    detect.add_argument("--images", required=True, help="folder of images (searched recursively)")
    links_out_arg(detect)
    detect.add_argument("--pattern", default="*", help="only files whose name matches, e.g. 'pool_*' (default *)")
    model_args(detect)
    detect.add_argument("--split", default="pool", help="split recorded for new images (default pool)")
    detect.add_argument("--source", default="local", help="where the images come from, e.g. a drive id")
    add_config_args(detect, DetectConfig)
    detect.set_defaults(func=run)


def run(args) -> int:
    from detectors.config import DetectConfig
    from flows.detect import detect_folder

    detected = detect_folder(store_config(), args.images, config_from_args(DetectConfig, args), pattern=args.pattern,
                             model_version=args.model, checkpoint=args.checkpoint,
                             allow_links_out=args.allow_links_out, split=args.split, source=args.source)
    print(detected.report)
    print_refused(detected.refused, detected.report.quarantined)
    return 0
