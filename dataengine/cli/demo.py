"""`dataengine demo`."""

from __future__ import annotations


def add_parser(sub) -> None:
    demo = sub.add_parser("demo", help="run the end-to-end loop on embedded synthetic street scenes",
                          description="Run the whole loop on the embedded default data and print what it did, ending "
                                      "with the verdict on the test split: mined against random, on the tail's "
                                      "false positives, the tail's mAP and the superset's.")
    demo.add_argument("--quick", action="store_true", help="a shorter run, for a first look")
    demo.add_argument("--data-seed", type=int, default=0,
                      help="draw other scenes (default 0): a verdict must not change between draws")
    demo.add_argument("--test", type=int, default=None,
                      help="images in the test split the arms are reported on (default: 150, --quick 40; with "
                           "--rounds, none unless given); 0 reports on the val split that chose the queries, which "
                           "flatters the mined arm")
    demo.add_argument("--preset", default=None, choices=["small", "mobilenet"],
                      help="the seed model: mobilenet (MobileNetV2-FPN from the packaged ImageNet weights when "
                           "installed, else from scratch; the default) or small (ResNet-18-FPN from scratch; the "
                           "default of --quick)")
    demo.add_argument("--strategy", default="errors", choices=["errors", "uncertainty", "diversity", "hybrid"],
                      help="how the mined arm's batch is chosen (mining/strategies; default errors); the random arm "
                           "of the same budget is drawn beside it either way")
    demo.add_argument("--workers", type=int, default=None,
                      help="arm runs trained and scored at once, each in its own process with a share of the CPU "
                           "threads (default 2, --quick 1): the digits differ from one process's, not the verdict")
    demo.add_argument("--rounds", type=int, default=1,
                      help="turn the loop this many times for an errors (mined), a random and a no-new-data engine "
                           "side by side, retraining and gating each round (default 1: the single-round demo)")
    demo.set_defaults(func=run)


def run(args) -> int:
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
                    strategy=args.strategy, workers=args.workers)
