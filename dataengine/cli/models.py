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

    from fdb import models as registry
    from jobs.context import connection

    fdb = connection(store_config())
    if args.action == "list":
        docs = registry.list_models(fdb)
        if not docs:
            print("no model registered yet: train one with `dataengine train`")
        for doc in docs:
            print(f"{doc['stage']:<11} {doc['_id']:<48} parent {doc.get('parent') or '-':<40} "
                  f"{doc.get('role', 'model'):<5} {_numbers(doc)}".rstrip())
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


def _numbers(doc: dict) -> str:
    """bbox mAP as the review app shows it (`fdb.models.bbox_map`), and the test split's where there is one."""
    from fdb import models as registry

    shown = [] if (value := registry.bbox_map(doc)) is None else [f"bbox mAP {value:.3f}"]
    test = registry.test_numbers(doc) or {}
    shown += [f"test {subset} {test[subset]:.3f}" for subset in ("superset", "tail") if test.get(subset) is not None]
    return ", ".join(shown)
