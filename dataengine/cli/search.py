"""`dataengine search`."""

from __future__ import annotations

import sys
from pathlib import Path

from dataengine.cli.options import store_config


def add_parser(sub) -> None:
    search = sub.add_parser(
        "search", help="query by example: the pool images (or detections) most like an image, or a box in it",
        description="Run the model on one image (with the feature taps) and search the pool's vector index with "
                    "it: without --box, the image's pooled vector finds the nearest pool images; with --box, the "
                    "box head's vector of that box (pooled as if it were a proposal) finds the nearest pool "
                    "detections, and their images. Every pool image the model processed is searched, exported or "
                    "labelled or not. Prints the hits nearest first and writes a montage PNG of the query beside "
                    "them. The query image is not recorded in fdb.")
    search.add_argument("--image", required=True, help="the query image file")
    search.add_argument("--box", default=None, metavar="X,Y,W,H",
                        help="a box in the image's pixels (x, y of its top-left corner, width, height): search the "
                             "pool's detections with it instead of the pool's images with the whole image")
    search.add_argument("--k", type=int, default=20, help="hits to find (default 20)")
    search.add_argument("--model", default=None, help="model version registered in fdb (default: the production "
                                                      "model); the pool must have been detected with it")
    search.add_argument("--out", default=None, help="folder for the montage PNG (default: search/ in the data home)")
    search.set_defaults(func=run)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """`x,y,w,h` as four numbers, the width and height positive; ValueError saying what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--box takes four numbers x,y,w,h (pixels), not {text!r}") from None
    if not (w > 0 and h > 0):
        raise ValueError(f"--box {text!r}: its width and height must be positive")
    return x, y, w, h


def run(args) -> int:
    from flows.search import SEARCH_REFUSALS, search_pool

    try:
        box = parse_box(args.box) if args.box is not None else None
    except ValueError as exc:
        return _refuse(str(exc))
    if args.k < 1:
        return _refuse(f"--k must be at least 1, not {args.k}")
    if not Path(args.image).is_file():
        return _refuse(f"no image file {args.image}")
    try:
        result = search_pool(store_config(), args.image, box, args.k, model_version=args.model, out_dir=args.out)
    except SEARCH_REFUSALS as exc:
        return _refuse(str(exc))
    _print_result(result)
    return 0


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _print_result(result) -> None:
    from records import BOX_LAYER

    if result.layer == BOX_LAYER:
        x, y, w, h = result.box
        print(f"model {result.model_version}: the {len(result.hits)} pool detections nearest to the box "
              f"{x:g},{y:g},{w:g},{h:g} of {result.image} (layer {result.layer}), nearest first:")
        for hit in result.hits:
            box = ",".join(f"{v:.0f}" for v in hit.bbox or [])
            what = f"{hit.category} {hit.score or 0:.2f}  box {box}"
            print(f"  {hit.rank + 1:>4}. d={hit.distance:.4f}  {what}  {hit.uri}")
        print(f"their {len(result.images)} images, nearest first:")
    else:
        print(f"model {result.model_version}: the {len(result.hits)} pool images nearest to {result.image} "
              f"(layer {result.layer}), nearest first:")
    for hit in result.images:
        print(f"  {hit.rank + 1:>4}. d={hit.distance:.4f}  {hit.uri}")
    if result.montage:
        print(f"montage of the query and its nearest hits: {result.montage}")
