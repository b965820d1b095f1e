"""`dataengine compare`."""

from __future__ import annotations

from dataengine.cli.options import config_from_args, finetune_args, splits_args, store_config


def add_parser(sub) -> None:
    compare = sub.add_parser(
        "compare", help="the mined / random / control experiment on your data, with the report",
        description="Fine-tune the seed model (default: production) three ways from the same start: with the "
                    "mined batch's labels, with the random batch's, and with no new data (control); score every "
                    "arm with pycocotools on the superset, the subset without the query images and the query "
                    "subset; write the report (Markdown, HTML with plots, JSON).")
    splits_args(compare)
    compare.add_argument("--mined", required=True, help="batch id of the mined batch (labels imported)")
    compare.add_argument("--random", required=True, help="batch id of the random batch (labels imported)")
    compare.add_argument("--seed-checkpoint", default=None, help="a checkpoint file as the seed, instead of --model")
    finetune_args(compare, "report every arm on this split, which must have fed nothing (not the queries, the "
                           "gate or training; refused otherwise): its superset, tail and rest, at the serving "
                           "threshold too (default: the eval split, which flatters the mined arm)")
    compare.set_defaults(func=run)


def run(args) -> int:
    from detectors.config import FinetuneConfig
    from flows.retrain_and_compare import compare_batches
    from mining.config import EvaluationConfig

    run = compare_batches(store_config(), args.data, args.mined, args.random, seed_checkpoint=args.seed_checkpoint,
                          model_version=args.model, recipe=config_from_args(FinetuneConfig, args),
                          train_split=args.train_split, eval_split=args.eval_split, test_split=args.test_split,
                          evaluation=config_from_args(EvaluationConfig, args))
    print(f"seed model {run.seed_checkpoint}; query subset: {len(run.query_images)} evaluation images")
    print(f"report: {run.report}")
    return 0
