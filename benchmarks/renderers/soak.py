"""The nightly's fault-tolerance soak (`benchmarks/soak_bench.py` -> `results/soak.json`)."""

from __future__ import annotations

from renderers import table


def _nightly_kills(soak: dict) -> tuple[list, list]:
    """The kills aimed at the nightly: those that killed a running night, and those that found it finished."""
    aimed = [e for e in soak["events"] if e["target"].startswith("nightly")]
    return [e for e in aimed if e["exit"] != 0], [e for e in aimed if e["exit"] == 0]


def soak_summary(soak: dict) -> str:
    """What was killed, and what was lost or duplicated, in sentences."""
    killed, finished = _nightly_kills(soak)
    during = [e for e in killed if "killed_at_processed" in e and "after_detection_s" not in e]
    after = [e for e in killed if "after_detection_s" in e]
    timed = [e for e in killed if "at_s" in e]
    carried = soak["kills"]["mongod_runs_carried_on"]
    summary, finals = soak["summary"], soak["finals"]
    verdict = "met" if summary["target_met"] else "**not met**"
    return (f"{len(killed) + len(finished)} SIGKILLs aimed at `dataengine nightly`: {len(killed)} killed a running "
            f"night ({len(during)} during detection, {len(after)} after every image was detected, {len(timed)} at a "
            f"set time into a run) and {len(finished)} came after the run had already finished (exit 0). "
            f"{soak['kills']['mongod']} SIGKILLs of its embedded mongod in the middle of a run: the run carried on "
            f"{sum(carried)} of {len(carried)} times (and was then killed too, so later kills still found work). "
            "Then " + " and ".join(f"a {f['run']} (exit {f['exit']})"
                                                                            for f in finals)
            + f", {soak['minutes']:.1f} minutes in all.\n\n"
            f"Lost: **{summary['lost']}**. Duplicated: **{summary['duplicated']}**. Batches for the night: "
            f"**{summary['batches_per_night']}**. Files read from outside the folder: "
            f"**{summary['read_from_outside']}**. Target {verdict}.\n")


def soak_folder(soak: dict) -> str:
    """The night's folder and what became of its bad files."""
    folder, counts = soak["folder"], soak["counts"]
    quarantined = table(["quarantined file", "reason recorded"],
                        [[f"`{name}`", reason] for name, reason in counts["quarantined"]], "ll")
    return (f"The folder: {folder['good']} good images (the {folder['pool_scenes']} synthetic street scenes and "
            f"{folder['good'] - folder['pool_scenes']} under a name with spaces and non-ASCII letters), "
            f"{folder['duplicates']} copy of a good image under a second name, and {folder['bad']} bad files "
            f"({folder['link_out']} of them a link out of the folder). In the end {counts['pool_ok_processed']} "
            f"pool images "
            f"were processed ({counts['detections']:,} detections), {counts['pool_duplicates_recorded']} recorded "
            f"as a duplicate, and these quarantined:\n\n" + quarantined)


def soak_counts(soak: dict) -> str:
    """Every count of lost and duplicated records."""
    counts = soak["counts"]
    rows = [["lost", name.replace("_", " "), value] for name, value in counts["lost"].items()]
    rows += [["duplicated", name.replace("_", " "), value] for name, value in counts["duplicated"].items()]
    rows += [["batches for the night", name.replace("_", " "), value]
             for name, value in counts["batches_for_the_night"].items()]
    rows.append(["read from outside the folder", "files", counts["read_from_outside"]])
    return table(["check", "counted", "value"], rows, "llr")


def soak_events(soak: dict) -> str:
    """Each kill in order: what it hit, where the night stood, and how the process ended."""
    rows = []
    for e in soak["events"]:
        if "at_s" in e:
            when = f"{e['at_s']:.1f} s into the run"
        elif "after_detection_s" in e:
            when = f"{e['after_detection_s']:.1f} s after detection ended"
        else:
            when = f"at {e['killed_at_processed']} processed"
        if e["target"] == "mongod":
            when += f"; the run went on to {e['processed_after_restart']}"
        rows.append([e["run"], e["target"], e["processed_before"], when, e["exit"], e.get("note", "")])
    return table(["run", "killed", "processed before", "when", "exit", "note"], rows, "rlrlrl")


BLOCKS = {"soak-summary": ("soak.json", soak_summary), "soak-folder": ("soak.json", soak_folder),
          "soak-counts": ("soak.json", soak_counts), "soak-events": ("soak.json", soak_events)}
