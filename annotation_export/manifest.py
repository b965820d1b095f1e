"""The batch manifest: one row per image saying what it is, where it came from and why it was selected.

Why: labellers and reviewers see a file name in CVAT; the manifest ties it back to the original uri, the mining
run (selection, arm, model and index versions) and the reason (error types, classes, distances), so a surprising
image can be explained and the experiment audited.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from records import SelectedImage, SelectionInfo

COLUMNS = ["file_name", "uri", "image_id", "rank", "reason", "error_types", "classes", "hits", "best_distance",
           "query_distances", "selection_id", "arm", "model_version", "index_versions", "presigned_url",
           "decision", "decided_by", "decided_at"]


def _num(x: Any) -> Any:
    return None if x is None else round(float(x), 6)


def _when(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else ("" if value is None else str(value))


def manifest_rows(info: SelectionInfo, images: list[SelectedImage], file_names: dict[str, str],
                  presigned: dict[str, str] | None = None, decisions: dict | None = None) -> list[dict]:
    """One row per shipped image, in rank order. `file_names` maps uri -> file name in the batch, `presigned`
    file name -> presigned GET url (only when staged on S3), `decisions` image id -> a person's decision on it
    (`decision`, `by`, `at`), when one was made."""
    rows = []
    for img in sorted(images, key=lambda i: (i.rank, i.uri)):
        name = file_names[img.uri]
        decided = (decisions or {}).get(img.image_id) or {}
        rows.append({
            "file_name": name, "uri": img.uri, "image_id": str(img.image_id), "rank": img.rank,
            "reason": img.reason or "", "error_types": img.error_types, "classes": img.classes,
            "hits": img.hits, "best_distance": _num(img.best_distance),
            "query_distances": [{"error_id": str(q.error_id), "type": q.type, "category": q.category,
                                 "level": q.level, "distance": _num(q.distance)} for q in img.queries],
            "selection_id": info.selection_id, "arm": info.arm, "model_version": info.model_version,
            "index_versions": info.index_versions or {},
            "presigned_url": (presigned or {}).get(name, ""),
            "decision": decided.get("decision") or "", "decided_by": decided.get("by") or "",
            "decided_at": _when(decided.get("at")),
        })
    return rows


def rejected_rows(images: list[SelectedImage], decisions: dict) -> list[dict]:
    """The selected images a person rejected before export, and who, when and why: kept in the manifest, so a
    batch says what it left out."""
    rows = []
    for img in sorted(images, key=lambda i: (i.rank, i.uri)):
        decided = decisions[img.image_id]
        rows.append({"uri": img.uri, "image_id": str(img.image_id), "rank": img.rank, "reason": img.reason or "",
                     "rejected_by": decided.get("by") or "", "rejected_at": _when(decided.get("at")),
                     "note": decided.get("note") or ""})
    return rows


def manifest_json(rows: list[dict], rejected: list[dict] | None = None,
                  not_accepted: list[dict] | None = None) -> bytes:
    """`images`: the shipped rows; `rejected` and `not_accepted` (only when some were left out): the selected
    images a person rejected, and those nobody accepted when only accepted images ship."""
    doc: dict = {"images": rows}
    if rejected:
        doc["rejected"] = rejected
    if not_accepted:
        doc["not_accepted"] = not_accepted
    return (json.dumps(doc, sort_keys=True, indent=1, default=str) + "\n").encode()


def manifest_csv(rows: list[dict]) -> bytes:
    """CSV with lists joined by ';' and nested values as compact JSON, so a spreadsheet shows them whole."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = dict(row)
        out["error_types"] = ";".join(row["error_types"])
        out["classes"] = ";".join(row["classes"])
        out["query_distances"] = ";".join(f"{q['type']}:{q['category']}:{q['distance']}"
                                          for q in row["query_distances"])
        out["index_versions"] = json.dumps(row["index_versions"], sort_keys=True, separators=(",", ":"),
                                           default=str)
        out["best_distance"] = "" if row["best_distance"] is None else row["best_distance"]
        writer.writerow(out)
    return buf.getvalue().encode()
