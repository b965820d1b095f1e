"""Inference over imagery into the feature database, incremental and crash-safe.

For each image not yet processed by this model version: run the detector with taps, write its detections
(box, score, class, mask as RLE), one box-head vector per detection and one image vector, then mark the image
processed by this version. Every write is idempotent (ids derive from image, model and rank), and the mark comes
last, so a run killed at any point is finished by the next one without loss or duplicates. An image that cannot
be decoded is quarantined with its reason and the run goes on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from detectors.checkpoint import Checkpoint
from detectors.coco import load_image
from detectors.taps import BOX_LAYER, IMAGE_LAYER, TappedDetections, detect_with_features
from fdb.images import ingest_images, read_uri
from fdb.store import FeatureDB, utcnow


@dataclass
class DetectReport:
    model_version: str
    images_seen: int = 0
    images_processed: int = 0
    images_skipped: int = 0  # already processed by this model version
    detections: int = 0
    features: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"model {self.model_version}: {self.images_seen} images, {self.images_processed} processed, "
                f"{self.images_skipped} already done, {len(self.quarantined)} quarantined; "
                f"{self.detections} detections and {self.features} feature vectors written")


def detection_records(image_id, out: TappedDetections, checkpoint: Checkpoint,
                      min_score: float) -> tuple[list[dict], list[int]]:
    """fdb records for the detections scoring at least `min_score`, and their positions in `out`."""
    cfg = checkpoint.config
    keep = (out.scores >= min_score).nonzero().flatten().tolist()
    records = []
    masks = None
    if out.masks is not None and keep:
        binary = (out.masks[keep, 0] > 0.5).numpy().astype(np.uint8)
        masks = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    for rank, k in enumerate(keep):
        x0, y0, x1, y1 = out.boxes[k].tolist()
        label = int(out.labels[k])
        record = {
            "image_id": image_id, "rank": rank, "box": [x0, y0, x1 - x0, y1 - y0], "score": float(out.scores[k]),
            "label": label, "category_id": cfg.category_ids[label - 1] if cfg.category_ids else label,
            "category_name": cfg.class_names[label - 1], "proposal_index": int(out.proposal_index[k]),
        }
        if masks is not None:
            record["mask"] = {"size": list(masks[rank]["size"]), "counts": masks[rank]["counts"].decode()}
        records.append(record)
    return records, keep


def detect_images(fdb: FeatureDB, checkpoint: Checkpoint, uris: list[str], split: str = "pool",
                  source: str = "local", batch_size: int = 4, min_score: float = 0.25, labelled: bool = False,
                  progress: bool = True) -> DetectReport:
    """Ingest `uris`, then detect with taps on those this model version has not processed yet."""
    version = checkpoint.version
    report = DetectReport(model_version=version, images_seen=len(uris))
    ingest = ingest_images(fdb, uris, source=source, split=split, labelled=labelled)
    report.quarantined.extend(ingest.quarantined)
    todo = fdb.unprocessed(version, {"uri": {"$in": list(uris)}})
    report.images_skipped = fdb.images.count_documents({"uri": {"$in": list(uris)}, "processed_by": version})
    model = checkpoint.model.eval()
    bar = tqdm(total=len(todo), desc=f"detect ({version})", unit="img", disable=not progress)
    for start in range(0, len(todo), batch_size):
        docs, images = [], []
        for doc in todo[start:start + batch_size]:
            try:
                images.append(load_image(io.BytesIO(read_uri(doc["uri"]))))
                docs.append(doc)
            except Exception as exc:  # noqa: BLE001 - any decode failure quarantines the image, the run goes on
                reason = f"failed to load for detection: {exc}"
                fdb.images.update_one({"_id": doc["_id"]}, {"$set": {"status": "quarantined", "reason": reason,
                                                                      "checked_at": utcnow()}})
                report.quarantined.append((doc["uri"], reason))
        if docs:
            _write_batch(fdb, checkpoint, docs, detect_with_features(model, images), min_score, report)
        bar.update(len(todo[start:start + batch_size]))
    bar.close()
    return report


def _write_batch(fdb, checkpoint, docs, outputs, min_score, report) -> None:
    version = checkpoint.version
    det_records, det_ids, det_images, det_vectors = [], [], [], []
    for doc, out in zip(docs, outputs):
        records, keep = detection_records(doc["_id"], out, checkpoint, min_score)
        det_records.extend(records)
        det_ids.extend(fdb.detection_id(doc["_id"], version, r["rank"]) for r in records)
        det_images.extend(doc["_id"] for _ in records)
        det_vectors.append(out.box_features[keep].numpy())
    report.detections += fdb.write_detections(version, det_records).inserted
    if det_ids:
        report.features += fdb.write_features(version, BOX_LAYER, det_ids, np.concatenate(det_vectors).astype(np.float32),
                                              image_ids=det_images).inserted
    image_vectors = np.stack([out.image_feature.numpy() for out in outputs]).astype(np.float32)
    report.features += fdb.write_features(version, IMAGE_LAYER, [d["_id"] for d in docs], image_vectors,
                                          owner_kind="image").inserted
    # Last: only now is the image's work for this model complete.
    fdb.mark_processed([d["_id"] for d in docs], version)
    report.images_processed += len(docs)
