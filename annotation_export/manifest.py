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

COLUMNS = ["file_name", "uri", "image_id", "rank", "reason", "error_types", "classes", "hits", "best_distance",
           "query_distances", "selection_id", "arm", "model_version", "index_versions", "presigned_url"]


def _num(x: Any) -> Any:
    return None if x is None else round(float(x), 6)


def manifest_rows(selection_docs: list[dict], file_names: dict[str, str],
                  presigned: dict[str, str] | None = None) -> list[dict]:
    """One row per selected image, in rank order. `file_names` maps uri -> file name in the batch, `presigned`
    file name -> presigned GET url (only when staged on S3)."""
    rows = []
    for doc in sorted(selection_docs, key=lambda d: (d.get("rank", 0), d["uri"])):
        queries = doc.get("queries") or []
        name = file_names[doc["uri"]]
        rows.append({
            "file_name": name, "uri": doc["uri"], "image_id": str(doc["image_id"]), "rank": doc.get("rank"),
            "reason": doc.get("reason") or "",
            "error_types": sorted({q.get("type") for q in queries if q.get("type")}),
            "classes": sorted({q.get("category") for q in queries if q.get("category")}),
            "hits": doc.get("hits"), "best_distance": _num(doc.get("best_distance")),
            "query_distances": [{"error_id": str(q.get("error_id")), "type": q.get("type"),
                                 "category": q.get("category"), "level": q.get("level"),
                                 "distance": _num(q.get("distance"))} for q in queries],
            "selection_id": doc["selection_id"], "arm": doc.get("arm"), "model_version": doc.get("model_version"),
            "index_versions": doc.get("index_versions") or {},
            "presigned_url": (presigned or {}).get(name, ""),
        })
    return rows


def manifest_json(rows: list[dict]) -> bytes:
    return (json.dumps({"images": rows}, sort_keys=True, indent=1, default=str) + "\n").encode()


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
