"""`dataengine split`."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    split = sub.add_parser(
        "split", help="split your own COCO set into train / val / pool / test (duplicates together, a class starved)",
        description="Split a labelled COCO set into the dataset directory every command reads: annotations/"
                    "{train,val,pool,test}.json (the pool keeps its labels, as the benchmarks' oracle) and images/, "
                    "a link to the source images (never copied), plus split.json recording how. Duplicates "
                    "(duplicate_of, identical bytes) share a split; classes are stratified rarest first, so test "
                    "gets its share of a rare class; --starve leaves the labelled splits only N images of a class, the rest "
                    "in the pool for mining to find (test is never starved). Deterministic by seed.")
    split.add_argument("--coco", required=True, help="the source COCO instances json (boxes are enough)")
    split.add_argument("--images", default=None,
                       help="the source image folder (default: images/ beside the json's folder, else its folder)")
    split.add_argument("--out", required=True, help="output dataset directory")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--sizes", default=None, metavar="SPLIT=N,...",
                       help="images per split as counts or fractions, e.g. train=150,val=100,test=300 or test=0.35; "
                            "the pool takes the rest (default train=0.2,val=0.1,test=0.35); holdout=N adds labelled images "
                            "that only stop fine-tuning at its plateau (neither trained on nor queried nor tested)")
    split.add_argument("--starve", action="append", default=[], metavar="CLASS=N",
                       help="the labelled splits (train, val, holdout) keep at most N images holding CLASS, the others go to the pool "
                            "(repeatable), e.g. stop=5")
    split.set_defaults(func=run)


def run(args) -> int:
    from records.splits import parse_sizes, parse_starve, split_coco

    try:
        report = split_coco(args.coco, args.images, args.out, seed=args.seed, sizes=parse_sizes(args.sizes),
                            starve=parse_starve(args.starve))
    except (ValueError, OSError) as exc:  # a wrong path or option: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_splits(report))
    print(f"written to {args.out} (images/ links to {report['image_dir']})")
    return 0


def format_splits(report: dict) -> str:
    """The splits as a table: images, boxes, images per class; then what starving moved."""
    classes = list(next(iter(report["splits"].values()))["images_per_class"])
    width = max(len(name) for name in classes + ["images"]) + 2
    lines = [f"{'split':<8}" + "".join(f"{name:>{width}}" for name in ["images", "boxes", *classes])]
    for name, split in report["splits"].items():
        cells = [split["images"], split["boxes"], *split["images_per_class"].values()]
        lines.append(f"{name:<8}" + "".join(f"{cell:>{width}}" for cell in cells))
    if report["starve"]:
        starved = ", ".join(f"{name}={n}" for name, n in report["starve"].items())
        lines.append(f"starved {starved}: {len(report['moved_by_starving'])} images moved from the labelled splits to the "
                     f"pool, {len(report['refilled_from_pool'])} pool images refilled them")
    return "\n".join(lines)
