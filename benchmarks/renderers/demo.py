"""The demo's own output (`dataengine demo`, default scenes): the run `benchmarks/evaluation_bench.py --draw 0` keeps
in `results/evaluation/draw-0.json` (the demo's `comparison.json` evaluation and facts, draw 0 of
`results/evaluation.json`), and the same demo measured on another machine (`results/demo/other-machine.json`).

The verdict lines are the demo's own (`mining.report.verdict_lines`, what `dataengine demo` prints last), so the
page says what the demo says, in its words.
"""

from __future__ import annotations

import json
from pathlib import Path

from mining.evaluation import VERDICT_WORDS
from mining.report import ROW_NAMES, verdict_lines
from renderers import cell, table

RESULTS = Path(__file__).resolve().parents[1] / "results"
ARMS = (("before", "seed model"), ("mined", "mined"), ("random", "random"), ("control", "control"))


def _provenance(run: dict) -> str:
    images = run["evaluation"]["images"]
    return (f"The demo's own run of {run['date']} (`dataengine demo`, default scenes: draw {run['draw']} of "
            f"`evaluation.json`, {run['cpus']} CPUs): reported on the "
            f"{run['evaluation']['evaluated_on']} split, {images['superset']} images of which {images['tail']} in "
            f"the tail; mean ± sd over training seeds.")


def demo_verdict(run: dict) -> str:
    """The demo's verdict, mined against random: word, difference ± minimum detectable difference, margin."""
    return _provenance(run) + "\n\n" + "\n".join(verdict_lines(run["evaluation"], explain=False)) + "\n"


def _stat(stat: dict) -> dict:
    """One arm's metric; a single run (the seed model) has no sd."""
    single = isinstance(stat.get("runs"), list) and len(stat["runs"]) < 2
    return {"mean": stat["mean"], "sd": None if single else stat.get("sd")}


def demo_table(run: dict) -> str:
    """Each arm on the superset, the tail and the rest: bbox mAP, and precision, recall and false positives per
    image at the serving threshold."""
    evaluation = run["evaluation"]
    arms = evaluation["arms"]
    rows = [[ROW_NAMES[key]] + [cell(_stat(arms[arm][key])) if key in arms.get(arm, {}) else "–" for arm, _ in ARMS]
            for key in ROW_NAMES]
    facts = run["facts"]
    return (table([""] + [title for _, title in ARMS], rows)
            + f"\nDraw {run['draw']}, {run['date']}; serving threshold {evaluation['serving_threshold']:g}; "
              f"{facts['training seeds per arm']} training seeds per arm, "
              f"{facts['training seeds of the control arm']} for the control; the seed model is one run.\n")


def demo_setting(run: dict) -> str:
    """What the demo's run was made of (its report's facts)."""
    rows = [[name, value] for name, value in run["facts"].items()]
    return table(["setting", "value"], rows, "ll")


def _word(verdict: dict | None) -> str:
    return VERDICT_WORDS.get(verdict["verdict"], "not judged") if verdict else "not reported"


def _difference(verdict: dict | None, digits: int) -> str:
    if not verdict:
        return "–"
    mdd = verdict.get("min_detectable_difference")
    return f"{verdict['difference']:+.{digits}f}" + ("" if mdd is None else f" ± {mdd:.{digits}f}")


def _gain(gain: dict | None) -> str:
    if not gain:
        return "–"
    said = ("within 2 sd of a training run: at its plateau" if gain["within_2_sd"]
            else "beyond 2 sd of a training run: had not plateaued")
    return f"{gain['gain']:+.3f} ({said})"


def _machine_row(name: str, run: dict) -> list:
    verdict, arms = run.get("verdict", {}), run.get("arms", {})
    superset, tail_fps = verdict.get("superset_bbox_map"), verdict.get("tail_fp_per_image")
    return [name, f"{_word(superset)}, {_difference(superset, 3)}",
            _gain(run.get("control_gain", {}).get("superset_bbox_map")),
            f"{_word(tail_fps)}, {_difference(tail_fps, 2)}"] + [
        cell(_stat(arms[arm]["superset_bbox_map"])) if "superset_bbox_map" in arms.get(arm, {}) else "–"
        for arm in ("mined", "random", "control")]


def demo_machines(other: dict) -> str:
    """The same demo on two machines: the superset verdict, the control arm's gain over the seed model and the tail
    false-positive verdict; then which words differed."""
    here = json.loads((RESULTS / other["compared_with"]).read_text())
    mine = here["evaluation"]
    rows = [_machine_row(f"this project's ({here['cpus']} CPUs, {here['date']}, `{other['compared_with']}`)", mine),
            _machine_row(f"issue {other['issue']}'s reporter ({other['cpus']} CPUs, `demo/other-machine.json`)",
                         other)]
    text = table(["machine", "bbox mAP, superset: verdict, mined − random",
                  "control − seed model, bbox mAP, superset", "FPs per image @ serving, tail: verdict, mined − random",
                  "superset mined", "superset random", "superset control"], rows)
    shared = [key for key in other["verdict"] if key in mine.get("verdict", {})]
    differed = [key for key in shared if other["verdict"][key]["verdict"] != mine["verdict"][key]["verdict"]]
    held = [key for key in shared if key not in differed]
    lines = []
    for key in differed:
        lines.append(f"- The word that differed: {ROW_NAMES[key]}, **{_word(mine['verdict'][key])}** here, "
                     f"**{_word(other['verdict'][key])}** there (its minimum detectable difference "
                     f"{mine['verdict'][key]['min_detectable_difference']:.3f} here, "
                     f"{other['verdict'][key]['min_detectable_difference']:.3f} there, against a margin of "
                     f"{mine['verdict'][key]['margin']:g}).")
    for key in held:
        lines.append(f"- The word that held: {ROW_NAMES[key]}, **{_word(mine['verdict'][key])}** on both.")
    gain_here = mine.get("control_gain", {}).get("superset_bbox_map")
    gain_there = other.get("control_gain", {}).get("superset_bbox_map")
    if gain_here and gain_there and gain_here["within_2_sd"] != gain_there["within_2_sd"]:
        lines.append(f"- The seed model's plateau: control − seed {gain_here['gain']:+.3f} here "
                     f"({'within' if gain_here['within_2_sd'] else 'beyond'} 2 sd), {gain_there['gain']:+.3f} "
                     f"there ({'within' if gain_there['within_2_sd'] else 'beyond'} 2 sd).")
    return text + "\n" + "\n".join(lines) + f"\n\nThe other machine's numbers: {other['source']}\n"


BLOCKS = {"demo-verdict": ("evaluation/draw-0.json", demo_verdict),
          "demo-table": ("evaluation/draw-0.json", demo_table),
          "demo-setting": ("evaluation/draw-0.json", demo_setting),
          "demo-machines": ("demo/other-machine.json", demo_machines)}
