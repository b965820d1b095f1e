"""`dataengine rollout`."""

from __future__ import annotations

from dataengine.cli.options import add_config_args, config_from_args


def add_parser(sub) -> None:
    from detectors.config import DetectConfig

    rollout = sub.add_parser(
        "rollout", help="re-detect the archive with a new model, then make it the production model",
        description="A model's features are its own: before a new model can serve the nights, every image in the "
                    "store needs its detections and vectors. This re-detects them in chunks (on Dask workers with "
                    "--dask-workers N or --dask-address tcp://host:8786) while the production model keeps serving "
                    "the nights, catches up with what nights ingested meanwhile, builds the new model's pool index "
                    "and hands production over (refused if production changed meanwhile). A killed rollout "
                    "resumes where it stopped when run again.")
    which = rollout.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="the registered model version to roll out")
    which.add_argument("--checkpoint", help="a checkpoint file to roll out (registered as a candidate on the way)")
    rollout.add_argument("--chunk-size", type=int, default=256, help="images per detection task (default 256)")
    rollout.add_argument("--backend", default="auto", choices=["auto", "exact", "hnsw", "annoy"],
                         help="the new pool index's backend, as mining's --backend (default auto)")
    add_config_args(rollout, DetectConfig)
    rollout.add_argument("--dask-workers", type=int, default=0,
                         help="run detection on a local Dask cluster of N worker processes")
    rollout.add_argument("--dask-address", default=None, help="run detection on this Dask scheduler")
    rollout.add_argument("--no-progress", action="store_true", help="no progress bar (the logs still say the ETA)")
    rollout.set_defaults(func=run)


def run(args) -> int:
    from detectors.config import DetectConfig
    from flows.rollout import rollout
    from flows.runners import on_cluster

    flow = on_cluster(rollout, args.dask_address, args.dask_workers)
    report = flow(model_version=args.model, checkpoint=args.checkpoint, detection=config_from_args(DetectConfig, args),
                  chunk_size=args.chunk_size, backend=args.backend, progress=not args.no_progress)
    print(f"rolled out {report.model_version}: {report.detect} in {report.seconds:.1f} s "
          f"({report.images_per_second:.1f} images/s on {len(report.detect.workers)} worker(s)); "
          f"passes {report.passes}; {report.marks_carried} listing marks carried")
    print(f"production: {report.replaced} -> {report.model_version}")
    return 0
