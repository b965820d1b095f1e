"""`dataengine retrain`."""

from __future__ import annotations

import sys

from dataengine.cli.options import config_from_args, finetune_args, splits_args


def add_parser(sub) -> None:
    retrain = sub.add_parser(
        "retrain", help="train a candidate on everything labelled so far and promote it only if it is better",
        description="Fine-tune the production model on the labelled set plus every batch whose labels came back "
                    "(newest label version), once per training seed; score the candidate and production with "
                    "pycocotools and typed errors on the fixed evaluation set; promote the candidate only when it "
                    "is not worse on the superset beyond the seed-to-seed noise and makes fewer of the errors the "
                    "batches were mined for. The decision and its numbers go to fdb and a report.")
    splits_args(retrain)
    retrain.add_argument("--promote", default="auto", choices=["auto", "never"],
                         help="auto: switch production when the gate passes; never: judge and report only")
    finetune_args(retrain, "also report production and the candidate on this split, which must have fed nothing "
                           "(refused otherwise): superset, tail and rest, at the serving threshold too; the gate "
                           "never sees it")
    retrain.set_defaults(func=run)


def run(args) -> int:
    from detectors.config import FinetuneConfig
    from flows.retrain import retrain
    from mining.config import EvaluationConfig

    try:
        result = retrain(data_dir=args.data, recipe=config_from_args(FinetuneConfig, args), promote=args.promote,
                         base_model=args.model, train_split=args.train_split, eval_split=args.eval_split,
                         test_split=args.test_split, evaluation=config_from_args(EvaluationConfig, args))
    except LookupError as exc:
        print(f"nothing retrained: {exc}", file=sys.stderr)
        return 2
    decision = result.decision
    print(f"candidate {result.candidate} on the labelled set plus {len(result.batches)} labelled batch(es)")
    for ok, reason in zip(decision.checks.values(), decision.reasons):
        print(f"  {'PASS' if ok else 'FAIL'}: {reason}")
    print(f"production: {result.production_before} -> {result.production_after}" if result.promoted else
          f"not promoted; production stays {result.production_before}")
    print(f"report: {result.report}")
    return 0
