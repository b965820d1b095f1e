"""`dataengine synth`."""

from __future__ import annotations


def add_parser(sub) -> None:
    synth = sub.add_parser("synth", help="generate the synthetic street-scene dataset (COCO, with distractors)",
                           description="Generate synthetic street scenes (4 classes with masks, plus unlabelled "
                                       "sign-like distractors clustered in two districts) as a COCO dataset "
                                       "directory with train / val / pool splits. Deterministic by seed.")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--train", type=int, default=300, help="train images (default 300)")
    synth.add_argument("--val", type=int, default=100, help="val images (default 100)")
    synth.add_argument("--pool", type=int, default=600, help="unlabelled-pool images (default 600)")
    synth.add_argument("--test", type=int, default=0,
                       help="test images (default 0: none): a split only ever reported on, never used for queries, "
                            "the gate or early stopping (pass it to compare / retrain as --test-split)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--train-districts", type=int, nargs="*", default=None,
                       help="draw the train split from these districts only (0-3 are suburbs, 4-5 the markets "
                            "full of look-alikes), e.g. 0 1 2 3; default: all")
    synth.add_argument("--hard-share", type=float, default=None, metavar="F",
                       help="share of val, pool and test scenes that hold look-alikes (e.g. 0.05 for a real tail); "
                            "default: each district's own rate, about 0.29 over all districts")
    synth.add_argument("--test-tail", type=int, default=None, metavar="N",
                       help="with --hard-share: test scenes drawn apart as the tail, all holding look-alikes, so the "
                            "tail can be measured at any share (default: a third of --test)")
    synth.add_argument("--boxes-only", action="store_true",
                       help="leave the instance masks out (boxes only, as most street datasets come)")
    synth.set_defaults(func=run)


def run(args) -> int:
    from flows.datasets import synthetic_dataset

    paths = synthetic_dataset(args.out, args.train, args.val, args.pool, seed=args.seed,
                              train_districts=tuple(args.train_districts) if args.train_districts else None,
                              boxes_only=args.boxes_only, n_test=args.test, hard_share=args.hard_share,
                              n_test_tail=args.test_tail)
    for split, path in paths.items():
        print(f"{split:<6} {path}")
    return 0
