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
    from flows.mine_hard_cases import mine_labelled_set
    from mining.config import LabelErrorConfig, MatchConfig, MiningConfig

    gt, images = labelled_set(args)
    if gt is None:
        return 2
    mining, match = config_from_args(MiningConfig, args), config_from_args(MatchConfig, args)
    found = mine_labelled_set(store_config(), gt, images, model_version=args.model, checkpoint=args.checkpoint,
                              mining=mining, match=match, label_errors=config_from_args(LabelErrorConfig, args),
                              progress=True)
    print(f"model {found.model_version}: errors of the labelled set (IoU >= {match.iou_threshold}, "
          f"score >= {match.score_threshold}):")
    print(found.mined.error_table)
    _print_selection(found.mined, mining, args.show)
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
