"""`dataengine models`."""

from __future__ import annotations

import sys

from dataengine.cli.options import store_config


def add_parser(sub) -> None:
    models = sub.add_parser(
        "models", help="the model registry: list, show, promote, roll back",
        description="Every registered model version with its stage (candidate, production, archived), parent, "
                    "training data, recipe and metrics. Exactly one model is in production: nightly, mine and "
                    "export use it unless told otherwise. `promote VERSION` switches production to it atomically "
                    "and records the switch; `rollback` goes back to the model the last switch replaced.")
    models.add_argument("action", choices=["list", "show", "promote", "rollback"])
    models.add_argument("version", nargs="?", default=None, help="model version (show: default production)")
    models.add_argument("--why", default=None, help="the reason recorded with a promote or rollback")
    models.set_defaults(func=run)


def run(args) -> int:
    import json

    from flows import models

    store = store_config()
    if args.action == "list":
        lines = models.list_models(store)
        if not lines:
            print("no model registered yet: train one with `dataengine train`")
        for line in lines:
            print(f"{line.stage:<11} {line.version:<48} parent {line.parent or '-':<40} "
                  f"{line.role:<5} {_numbers(line)}".rstrip())
        return 0
    if args.action == "show":
        try:
            card = models.model_card(store, args.version)
        except LookupError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(json.dumps(card.record, indent=1, default=str))
        for p in card.switches:
            print(f"{p['at']:%Y-%m-%d %H:%M} production {p['from']} -> {p['to']}: {p['why']}")
        return 0
    try:
        if args.action == "promote":
            if not args.version:
                print("promote needs a VERSION", file=sys.stderr)
                return 2
            switch = models.promote(store, args.version, why=args.why or "promoted by hand")
        else:
            switch = models.rollback(store, why=args.why or "rolled back by hand")
    except models.SWITCH_REFUSALS as exc:
        print(f"nothing switched: {exc}", file=sys.stderr)
        return 2
    print(f"production: {switch.from_version} -> {switch.to_version}" if switch.switched else
          f"{switch.to_version} is already in production")
    return 0


def _numbers(line) -> str:
    """bbox mAP as the review app shows it, and the test split's where there is one."""
    shown = [] if line.bbox_map is None else [f"bbox mAP {line.bbox_map:.3f}"]
    shown += [f"test {subset} {value:.3f}" for subset, value in line.test.items()]
    return ", ".join(shown)
