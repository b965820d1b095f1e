"""Where the model's output meets the store: ingest -> detect with taps -> write detections and features -> mark
processed. Incremental and crash-safe.

For each image not yet processed by this model version: one inference pass (`detectors.inference`) whose
`StoreWriter` consumer writes its detections (box, score, class, mask as RLE), one box-head vector per detection
and one image vector, then marks the image processed by this version. Every write is idempotent (ids derive from
image, model and rank), and the mark comes last, so a run killed at any point is finished by the next one without
loss or duplicates. An image that cannot be decoded is quarantined with its reason and the run goes on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

import torch

from detectors.checkpoint import Checkpoint
from detectors.coco import load_image
from detectors.config import DetectConfig
from detectors.inference import ImageDetections, Labels, run_inference
from detectors.taps import box_vectors
from fdb import FeatureDB
from fdb import detections as detection_store
from fdb import images as image_store
from records import BOX_LAYER, GT_BOX_LAYER, IMAGE_LAYER
from records.coco import CocoSet


@dataclass
class DetectReport:
    model_version: str
    images_seen: int = 0
    images_processed: int = 0
    images_skipped: int = 0  # already processed by this model version
    detections: int = 0
    features: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)  # host:pid of the processes that ran it (Dask workers)

    def __add__(self, other: "DetectReport") -> "DetectReport":
        """Two chunks' reports as one (a night's chunks, however many workers ran them)."""
        return DetectReport(self.model_version, self.images_seen + other.images_seen,
                            self.images_processed + other.images_processed,
                            self.images_skipped + other.images_skipped, self.detections + other.detections,
                            self.features + other.features, self.quarantined + other.quarantined,
                            sorted(set(self.workers) | set(other.workers)))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> "DetectReport":
        """As `as_dict` wrote it, or as a night recorded it before (`processed`, `skipped`, no `images_seen`)."""
        renamed = {"processed": "images_processed", "skipped": "images_skipped"}
        known = {f.name for f in fields(cls)}
        values = {renamed.get(k, k): v for k, v in doc.items() if renamed.get(k, k) in known}
        return cls(**{**values, "quarantined": [tuple(q) for q in values.get("quarantined", [])]})

    def __str__(self) -> str:
        return (f"model {self.model_version}: {self.images_seen} images, {self.images_processed} processed, "
                f"{self.images_skipped} already done, {len(self.quarantined)} quarantined; "
                f"{self.detections} detections and {self.features} feature vectors written")


class StoreWriter:
    """A consumer of a tapped inference pass: each batch's detections and vectors into fdb, then the mark."""

    def __init__(self, fdb: FeatureDB, model_version: str, report: DetectReport, dtype: str = "float32"):
        self.fdb, self.version, self.report, self.dtype = fdb, model_version, report, dtype

    def reset(self) -> None:
        pass

    def process(self, docs: list[dict], outputs: list[ImageDetections]) -> None:
        fdb, version, report = self.fdb, self.version, self.report
        detections, det_ids, det_images, det_vectors = [], [], [], []
        for doc, out in zip(docs, outputs):
            for det in out.detections:
                det.image_id = doc["_id"]
                detections.append(det)
                det_ids.append(detection_store.detection_id(doc["_id"], version, det.rank))
                det_images.append(doc["_id"])
            det_vectors.append(out.box_features)
        report.detections += detection_store.write_detections(fdb, version, detections).inserted
        if det_ids:
            report.features += fdb.write_features(version, BOX_LAYER, det_ids,
                                                  np.concatenate(det_vectors).astype(self.dtype, copy=False),
                                                  image_ids=det_images).inserted
        image_vectors = np.stack([out.image_feature for out in outputs]).astype(self.dtype, copy=False)
        report.features += fdb.write_features(version, IMAGE_LAYER, [d["_id"] for d in docs], image_vectors,
                                              owner_kind="image").inserted
        # Last: only now is the image's work for this model complete.
        image_store.mark_processed(fdb, [d["_id"] for d in docs], version)
        report.images_processed += len(docs)

    def evaluate(self) -> DetectReport:
        return self.report


def detect_images(fdb: FeatureDB, checkpoint: Checkpoint, uris: list[str], config: DetectConfig = DetectConfig(),
                  split: str = "pool", source: str = "local", labelled: bool = False,
                  progress: bool = True) -> DetectReport:
    """Ingest `uris`, then detect with taps on those this model version has not processed yet."""
    version = checkpoint.version
    report = DetectReport(model_version=version, images_seen=len(uris))
    ingest = image_store.ingest_images(fdb, uris, source=source, split=split, labelled=labelled)
    report.quarantined.extend(ingest.quarantined)
    todo = image_store.unprocessed(fdb, uris, version)
    report.images_skipped = len(image_store.processed_uris(fdb, uris, version))

    def quarantine(doc: dict, exc: Exception) -> None:
        reason = f"failed to load for detection: {exc}"
        image_store.quarantine(fdb, doc["_id"], reason)
        report.quarantined.append((doc["uri"], reason))

    labels = Labels(checkpoint.config.class_names, checkpoint.config.category_ids)
    writer = StoreWriter(fdb, version, report, config.feature_dtype)
    run_inference(checkpoint.model, labels, [(doc, doc["uri"]) for doc in todo], [writer],
                  batch_size=config.batch_size, taps=True, min_score=config.min_score, on_unreadable=quarantine,
                  progress=progress, desc=f"detect ({version})")
    return report


def detect_labelled_set(fdb: FeatureDB, checkpoint: Checkpoint, ground_truth: CocoSet,
                        config: DetectConfig = DetectConfig(), progress: bool = False) -> tuple[DetectReport, int]:
    """The labelled set through the detector (incrementally), so its errors can be typed from the store, and each
    labelled box's box-head vector (`tap_ground_truth`). Images with ground truth are labelled, whatever an earlier
    ingest called them: never mined. Returns the detection report and how many box vectors were written."""
    uris = [str(ground_truth.image_path(i).resolve()) for i in ground_truth.images]
    report = detect_images(fdb, checkpoint, uris, config, split="val", labelled=True, progress=progress)
    image_store.mark_labelled(fdb, uris, split="val")
    # Each labelled box's box-head vector: a miss searches the pool with what the model should have seen.
    return report, tap_ground_truth(fdb, checkpoint, ground_truth)


def tap_ground_truth(fdb: FeatureDB, checkpoint: Checkpoint, ground_truth: CocoSet) -> int:
    """The box head's vector of every labelled box (`records.GT_BOX_LAYER`), pooled from the model's features as
    if the box were a proposal, so a miss can search the pool with what the model should have seen there. Boxes
    already tapped for this model are skipped (a re-run writes nothing); images the store does not hold, or holds
    quarantined, are left out. Returns how many vectors were written."""
    version, model = checkpoint.version, checkpoint.model.eval()
    uri_of = {cid: str(ground_truth.image_path(cid).resolve()) for cid in ground_truth.images}
    docs = image_store.by_uri(fdb, uri_of.values())
    owners = {}
    for cid, uri in uri_of.items():
        doc = docs.get(uri)
        if doc is None or doc.get("status", "ok") != "ok":
            continue
        for ann in ground_truth.annotations_by_image[cid]:
            if ann["bbox"][2] >= 1 and ann["bbox"][3] >= 1:
                owners[fdb.ground_truth_id(doc["_id"], ann["id"])] = (cid, doc["_id"], ann)
    tapped_before = owners and fdb.layer_shape(version, GT_BOX_LAYER) is not None
    done = set(fdb.vectors_by_owner(version, GT_BOX_LAYER, list(owners))) if tapped_before else set()
    todo: dict = {}
    for owner, (cid, image_id, ann) in owners.items():
        if owner not in done:
            todo.setdefault(cid, []).append((owner, image_id, ann))
    written = 0
    for cid, rows in todo.items():
        boxes = torch.tensor([[x, y, x + w, y + h] for _, _, ann in rows for x, y, w, h in [ann["bbox"]]],
                             dtype=torch.float32)
        vectors = box_vectors(model, load_image(ground_truth.image_path(cid)), boxes).numpy()
        written += fdb.write_features(version, GT_BOX_LAYER, [owner for owner, _, _ in rows], vectors,
                                      image_ids=[image_id for _, image_id, _ in rows],
                                      owner_kind="ground_truth").inserted
    return written
