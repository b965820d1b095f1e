"""What the annotators changed: labels that came back against what was sent out.

For a labelling batch, what was sent out is the model's pre-annotations (its detections at or above the batch's
score threshold); for a review batch, the labels under review. Each returned label is matched to one sent out
(greedily, IoU >= 0.5, highest first) and counted as kept, moved (IoU < 0.95), relabelled (another class);
sent-out labels nobody kept are removed, returned labels nothing matched are added. Kept pre-annotations are the
labelling work the model saved the team.
"""

from __future__ import annotations

from fdb import FeatureDB
from fdb import detections as detection_store
from fdb import exports as export_store
from fdb import labels as label_store
from records.boxes import box_ious

MATCH_IOU = 0.5
MOVED_BELOW_IOU = 0.95
KINDS = ("kept", "moved", "relabelled", "removed", "added")


def label_changes(before: list[dict], after: list[dict]) -> dict[str, int]:
    """What the annotators changed on one image (`bbox`, `category_id` per label): labels kept, moved,
    relabelled, removed and added."""
    iou = box_ious([a["bbox"] for a in before], [a["bbox"] for a in after])
    pairs = sorted(((iou[i, j], i, j) for i in range(len(before)) for j in range(len(after))
                    if iou[i, j] >= MATCH_IOU), reverse=True)
    used_b, used_a, out = set(), set(), dict.fromkeys(KINDS, 0)
    for value, i, j in pairs:
        if i in used_b or j in used_a:
            continue
        used_b.add(i)
        used_a.add(j)
        if before[i]["category_id"] != after[j]["category_id"]:
            out["relabelled"] += 1
        elif value < MOVED_BELOW_IOU:
            out["moved"] += 1
        else:
            out["kept"] += 1
    out["removed"] = len(before) - len(used_b)
    out["added"] = len(after) - len(used_a)
    return out


def batch_changes(fdb: FeatureDB, batch_id: str, label_version: int | None = None) -> dict | None:
    """A labelling batch's returned labels (`label_version`, default the newest) against its pre-annotations:
    `totals` (kept, moved, relabelled, removed, added; `sent` and `returned` label counts, `saved`: the share of
    returned labels the team only had to keep), and `images` (per image: file name, image id and its counts).
    None when no labels came back."""
    export = export_store.get(fdb, batch_id)
    if export is None:
        raise LookupError(f"no batch {batch_id!r} in fdb")
    label_version = label_version or label_store.latest_version(fdb, batch_id)
    if label_version is None:
        return None
    returned = {d["image_id"]: d["annotations"] for d in label_store.read_version(fdb, batch_id, label_version)}
    images = export.get("images") or []
    sent: dict = {}
    if export.get("kind") != "review" and export.get("model_version"):
        for det in detection_store.read_detections(fdb, export["model_version"], [im["image_id"] for im in images],
                                                   min_score=export.get("min_score"), masks=False):
            sent.setdefault(det.image_id, []).append({"bbox": det.bbox, "category_id": det.category_id})
    totals = dict.fromkeys(KINDS, 0)
    rows = []
    for im in images:
        before, after = sent.get(im["image_id"], []), returned.get(im["image_id"])
        if after is None:
            continue  # not labelled in this version
        counts = label_changes(before, after)
        for key, n in counts.items():
            totals[key] += n
        rows.append({"image_id": im["image_id"], "file_name": im["file_name"], "sent": len(before),
                     "returned": len(after), **counts})
    n_sent, n_returned = sum(r["sent"] for r in rows), sum(r["returned"] for r in rows)
    return {"batch_id": batch_id, "label_version": label_version, "model_version": export.get("model_version"),
            "min_score": export.get("min_score"),
            "totals": {**totals, "sent": n_sent, "returned": n_returned,
                       "saved": round(totals["kept"] / n_returned, 4) if n_returned else None},
            "images": rows}
