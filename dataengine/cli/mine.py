"""`dataengine mine`."""

from __future__ import annotations

from dataengine.cli.options import (LABEL_ERROR_FLAGS, MATCH_FLAGS, add_config_args, config_from_args, labelled_set,
                                    model_args, store_config)


def add_parser(sub) -> None:
    from mining.config import LabelErrorConfig, MatchConfig, MiningConfig

    mine = sub.add_parser(
        "mine", help="find the model's errors on labelled images and mine look-alikes from the pool",
        description="Run the model over a labelled COCO set (incrementally), type its errors against the ground "
                    "truth (background FP, wrong class, duplicate/poor localisation, miss), query the unlabelled "
                    "pool's feature index with them, and record a selection of up to --budget images with the "
                    "reason for each, plus a random arm of the same budget. The pool must have been run through "
                    "`dataengine detect` with the same model. Same inputs, same selection.")
    mine.add_argument("--gt", default=None,
                      help="COCO json of the labelled images (e.g. the val split); default: the last one used")
    mine.add_argument("--images", default=None, help="image folder of --gt (default: beside the json)")
    model_args(mine)
    add_config_args(mine, MiningConfig)
    add_config_args(mine, MatchConfig, flags=MATCH_FLAGS)
    add_config_args(mine, LabelErrorConfig, flags=LABEL_ERROR_FLAGS)
    mine.add_argument("--show", type=int, default=15, help="selected images to print (default 15)")
    mine.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mining.config import LabelErrorConfig, MatchConfig, MiningConfig
    from mining.selection import pool_index_upkeep, select_hard_cases
    from records.coco import load_coco
    from jobs.context import checkpoint_of, connection, newest_labels, resolve_version
    from jobs.detect import detect_labelled_set

    store = store_config()
    gt, images = labelled_set(args)
    if gt is None:
        return 2
    mining, match = config_from_args(MiningConfig, args), config_from_args(MatchConfig, args)
    version, fdb = resolve_version(store, args.model, args.checkpoint), connection(store)
    ground_truth = load_coco(newest_labels(store, gt), image_dir=images)
    detect_labelled_set(fdb, checkpoint_of(store, version), ground_truth, progress=True)
    if mining.exemplars:  # the exemplars' boxes pooled through the box head, as the labelled set's are
        detect_labelled_set(fdb, checkpoint_of(store, version), load_coco(mining.exemplars), progress=True)
    pool_index_upkeep(fdb, version, mining, Path(store.home) / "indexes")  # ranking only reads it
    result = select_hard_cases(fdb, version, ground_truth, mining, match, out_dir=store.home,
                               label_config=config_from_args(LabelErrorConfig, args)).summary()
    print(f"model {version}: errors of the labelled set (IoU >= {match.iou_threshold}, "
          f"score >= {match.score_threshold}):")
    print(result.error_table)
    _print_selection(result, mining, args.show)
    return 0


def _print_selection(result, mining, show: int) -> None:
    by_level = result.queries_by_level
    print(f"{result.queries} queries ({by_level['detection']} with a box-head vector: a false positive's own, a "
          f"miss's ground-truth box's; {by_level['image']} with their image's vector)")
    if result.budget_shares:
        priced = ("in mAP" if mining.cost == "map" else
                  f"at the operating point ({mining.fp_cost:g} per false positive, {mining.miss_cost:g} per miss)")
        print(f"budget split by what each error type costs {priced} (--cost {mining.cost}, floor "
              f"{mining.type_floor:.0%}): " + ", ".join(f"{t} {n}" for t, n in result.budget_shares.items()))
    print(f"selection {result.selection_id} (strategy {mining.strategy}): {result.selected} images "
          f"(budget {mining.budget}, k {mining.k}), indexes {result.index_versions}")
    for rank, (uri, reason) in enumerate(result.top[:show], start=1):
        print(f"  {rank:>4}. {uri}\n        {reason}")
    if result.selected > show:
        print(f"  ... and {result.selected - show} more (all recorded in fdb, collection 'selections')")
    if result.random_selection_id:
        print(f"random arm {result.random_selection_id}: {len(result.random_uris)} images from the same pool")
    if result.montage:
        print(f"montage of queries and their neighbours: {result.montage}")
