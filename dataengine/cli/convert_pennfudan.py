"""`dataengine convert-pennfudan`."""

from __future__ import annotations


def add_parser(sub) -> None:
    penn = sub.add_parser("convert-pennfudan", help="convert PennFudanPed to a COCO dataset directory",
                          description="Convert PennFudanPed (instance-id masks) to COCO with RLE masks, split "
                                      "into train / val by seed. Images are linked, not copied.")
    penn.add_argument("--src", required=True, help="the PennFudanPed folder (with PNGImages/ and PedMasks/)")
    penn.add_argument("--out", required=True, help="output dataset directory")
    penn.add_argument("--train", type=int, default=120, help="images in the train split; the rest is val")
    penn.add_argument("--seed", type=int, default=0)
    penn.set_defaults(func=run)


def run(args) -> int:
    from flows.datasets import pennfudan_dataset

    for split, path in pennfudan_dataset(args.src, args.out, n_train=args.train, seed=args.seed).items():
        print(f"{split:<6} {path}")
    return 0
