"""What the commands share: flags derived from the stage configs, the store, the common arguments."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing


# Every stage's options are its config's fields (mining.selection.MiningConfig, mining.model_errors.MatchConfig,
# detectors.inference.DetectConfig, annotation_export.export.ExportConfig, detectors.train.TrainConfig): the
# defaults and help texts are defined there once, and the flags below are derived from them.
def add_config_args(parser, config_type, only: list[str] | None = None, flags: dict[str, str] | None = None) -> None:
    """One flag per field of `config_type` (or of those in `only`), `--field-name` unless `flags` renames it."""
    hints = typing.get_type_hints(config_type)
    for f in dataclasses.fields(config_type):
        if only is not None and f.name not in only:
            continue
        flag = (flags or {}).get(f.name, "--" + f.name.replace("_", "-"))
        help_text = f.metadata.get("help", f.name.replace("_", " "))
        kind = hints[f.name]
        kwargs: dict = {"dest": f"{config_type.__name__}.{f.name}", "default": f.default}
        shown = "" if f.default is None or "default" in help_text else f" (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                help=f"{help_text} (default: {'yes' if f.default else 'no'})", **kwargs)
            continue
        args = typing.get_args(kind)
        if typing.get_origin(kind) is tuple or (args and any(typing.get_origin(a) is tuple for a in args)):
            element = next((typing.get_args(a)[0] for a in (kind, *args) if typing.get_origin(a) is tuple), str)
            kwargs.update(nargs="*", type=element)
        else:
            base = next((a for a in args if a is not type(None)), kind)
            kwargs["type"] = base
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        else:
            kwargs["metavar"] = f.name.split("_")[0].upper()
        parser.add_argument(flag, help=help_text + shown, **kwargs)


def config_from_args(config_type, args):
    """The config the flags of `add_config_args` describe (fields without a flag keep their defaults)."""
    prefix = config_type.__name__ + "."
    values = {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}
    return config_type(**values)


MATCH_FLAGS = {"iou_threshold": "--iou", "score_threshold": "--score"}
# Beside mining's own flags, the label-error judge's say whose they are.
LABEL_ERROR_FLAGS = {name: "--label-" + name.replace("_", "-") for name in
                     ("min_score", "bad_box_iou", "spurious_support", "neighbours", "threshold",
                      "min_precision")}


def store_config():
    """The feature database's settings from the environment (`dataengine.config`), read when a command runs: the
    store's imports (pymongo) would otherwise cost every `--help` a quarter of a second."""
    from dataengine.config import store_config as from_environment

    return from_environment()


def links_out_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-links-out", action="store_true",
                        help="follow symbolic links that lead out of the image folder (refused by default: only "
                             "what lies under the folder is read)")


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model version registered in fdb (default: the production model)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file instead of --model")


def finetune_args(p: argparse.ArgumentParser, test_split_help: str) -> None:
    """What a command that fine-tunes and scores takes: the model it starts from, the split it may report on
    that fed nothing, the evaluation's and the fine-tuning's configs."""
    from detectors.config import FinetuneConfig
    from mining.config import EvaluationConfig

    p.add_argument("--model", default=None, help="the model version fine-tuned (default: production)")
    p.add_argument("--test-split", default=None, help=test_split_help)
    add_config_args(p, EvaluationConfig)
    add_config_args(p, FinetuneConfig)


def data_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--data", required=True, help="COCO dataset directory: annotations/<split>.json + images/")
    p.add_argument("--images", default=None, help="image folder, if not <data>/images")
    return p


def splits_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset directory: annotations/<split>.json + images/")
    p.add_argument("--train-split", default="train", help="the labelled set (default train)")
    p.add_argument("--eval-split", default="val", help="the fixed evaluation set (default val)")


def print_refused(refused: list[tuple[str, str]], quarantined: list[tuple[str, str]]) -> None:
    for path, reason in refused:
        print(f"  not read {path}: {reason} (--allow-links-out follows it)")
    for uri, reason in quarantined:
        print(f"  quarantined {uri}: {reason}")


def labelled_set(args) -> tuple[str | None, str | None]:
    """(COCO json, image folder) of the labelled set: --gt / --images, else the last mining run's (said so);
    (None, None) with the reason on stderr when there is none."""
    from flows.labelled_set import last_labelled_set

    if args.gt is not None:
        return args.gt, args.images
    known = last_labelled_set(store_config())
    if known is None:
        print("no labelled set known yet: pass --gt <COCO json of labelled images> once", file=sys.stderr)
        return None, None
    print(f"labelled set of the last mining run: {known[0]}")
    return known
