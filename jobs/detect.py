"""Where the model's output meets the store: ingest -> detect with taps -> write detections and features -> mark
processed. Incremental and crash-safe.

For each image not yet processed by this model version: one read and one decode, shared by its record (hash,
size, duplicate check) and the model (`Admission`; a batch ahead of the model in a thread on a GPU); one
inference pass (`detectors.inference`) whose `StoreWriter` consumer writes its detections (box, score, class,
mask as RLE), one box-head vector per detection and one image vector, then marks the images processed by this
version, every `DetectConfig.commit_every` images. Every write is idempotent (ids derive from image, model and
rank), and the mark comes last, so a run killed at any point is finished by the next one without loss or
duplicates. An image that cannot be decoded is quarantined with its reason and the run goes on.
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
from fdb.image_files import DecodedImage, read_image
from records import BOX_LAYER, GT_BOX_LAYER, IMAGE_LAYER
from records.coco import CocoSet


# Images read, recorded and handed to the model per `Admission` call: its writes and lookups are a few round trips
# to the store whatever the count, so more at once costs fewer of them; a GPU's prefetch queue holds about 3 x this
# many decoded images.
ADMIT_AT_ONCE = 16


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

    def as_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict) -> "DetectReport":
        """As `as_doc` wrote it, or as a night recorded it before (`processed`, `skipped`, no `images_seen`)."""
        renamed = {"processed": "images_processed", "skipped": "images_skipped"}
        known = {f.name for f in fields(cls)}
        values = {renamed.get(k, k): v for k, v in doc.items() if renamed.get(k, k) in known}
        return cls(**{**values, "quarantined": [tuple(q) for q in values.get("quarantined", [])]})

    def __str__(self) -> str:
        return (f"model {self.model_version}: {self.images_seen} images, {self.images_processed} processed, "
                f"{self.images_skipped} already done, {len(self.quarantined)} quarantined; "
                f"{self.detections} detections and {self.features} feature vectors written")


class StoreWriter:
    """A consumer of a tapped inference pass: detections and vectors into fdb, then the mark, every
    `commit_every` images (and at the end). A run killed between two commit points leaves writes that the next run
    repeats idempotently, and no image marked whose records are not all written."""

    def __init__(self, fdb: FeatureDB, model_version: str, report: DetectReport, dtype: str = "float32",
                 commit_every: int = 32):
        self.fdb, self.version, self.report, self.dtype = fdb, model_version, report, dtype
        self.commit_every = commit_every
        self.pending: list[tuple[dict, ImageDetections]] = []

    def reset(self) -> None:
        self.pending = []

    def process(self, docs: list[dict], outputs: list[ImageDetections]) -> None:
        self.pending.extend(zip(docs, outputs))
        if len(self.pending) >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        if not self.pending:
            return
        fdb, version, report = self.fdb, self.version, self.report
        docs = [doc for doc, _ in self.pending]
        detections, det_ids, det_images, det_vectors = [], [], [], []
        for doc, out in self.pending:
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
        image_vectors = np.stack([out.image_feature for _, out in self.pending]).astype(self.dtype, copy=False)
        report.features += fdb.write_features(version, IMAGE_LAYER, [d["_id"] for d in docs], image_vectors,
                                              owner_kind="image").inserted
        # Last: only now is the images' work for this model complete.
        if image_store.mark_processed(fdb, [d["_id"] for d in docs], version) < len(docs):
            # The server died between ingest and this commit point, losing records it had acknowledged but not yet
            # journaled: write them again, then mark them.
            image_store.restore_records(fdb, docs)
            image_store.mark_processed(fdb, [d["_id"] for d in docs], version)
        report.images_processed += len(docs)
        self.pending = []

    def evaluate(self) -> DetectReport:
        self.commit()
        return self.report


class Admission:
    """What the loader does with a batch of uris before the model sees it (in the prefetch thread on a GPU):
    read and decode each image once (`fdb.image_files.read_image`), record the new and the re-read quarantined ones
    from that read (hash, size, duplicate of a known image, or why it is unreadable), and hand the readable ones
    to the model as (record, tensor) pairs. Ingest and inference share the one read and decode."""

    def __init__(self, fdb: FeatureDB, version: str, known: dict[str, dict], source: str, split: str,
                 labelled: bool):
        self.fdb, self.version, self.known = fdb, version, known
        self.where = dict(source=source, split=split, labelled=labelled)
        self.ingest = image_store.IngestReport()
        self.seen: dict[str, str] = {}  # sha256 -> uri, among this run's new images
        self.unloadable: list[tuple[str, str]] = []  # known readable images that no longer decode

    def __call__(self, batch: list[tuple[str, str]]) -> list[tuple[dict, np.ndarray]]:
        read = [(uri, read_image(uri)) for uri, _ in batch]
        fresh = [(uri, image) for uri, image in read if not image_store.settled(self.known.get(uri))]
        image_store.register_images(self.fdb, fresh, self.known, self.ingest, self.seen, **self.where)
        registered = image_store.by_uri(self.fdb, [uri for uri, _ in fresh])
        admitted = []
        for uri, image in read:
            record = registered.get(uri) or self.known.get(uri)
            if record is None or record["status"] != "ok" or self.version in image_store.models_done(record):
                continue
            if not isinstance(image, DecodedImage):
                reason = f"failed to load for detection: {image}"
                image_store.quarantine(self.fdb, record["_id"], reason)
                self.unloadable.append((uri, reason))
                continue
            # uint8 pixels wait in the prefetch queue (a quarter of float32); the model's side converts them.
            admitted.append((record, image.rgb))
        return admitted


def detect_images(fdb: FeatureDB, checkpoint: Checkpoint, uris: list[str], config: DetectConfig = DetectConfig(),
                  split: str = "pool", source: str = "local", labelled: bool = False,
                  progress: bool = True) -> DetectReport:
    """Ingest `uris`, and detect with taps on those this model version has not processed yet, from one read and
    one decode of each image (`Admission`), the next batch read while the model runs on this one."""
    version = checkpoint.version
    uris = list(dict.fromkeys(str(u) for u in uris))
    report = DetectReport(model_version=version, images_seen=len(uris))
    known = image_store.by_uri(fdb, uris)
    done = {uri for uri, record in known.items() if version in image_store.models_done(record)}
    report.images_skipped = len(done)
    # A quarantined image is read again, done or not: a repaired file comes back (as an ingest would do).
    todo = sorted(uri for uri in uris if (uri not in done or known[uri]["status"] == "quarantined")
                  and (known.get(uri) or {}).get("status") != "duplicate")
    admission = Admission(fdb, version, known, source=source, split=split, labelled=labelled)
    labels = Labels(checkpoint.config.class_names, checkpoint.config.category_ids)
    writer = StoreWriter(fdb, version, report, config.feature_dtype, config.commit_every)
    try:
        run_inference(checkpoint.model, labels, [(uri, uri) for uri in todo], [writer], batch_size=config.batch_size,
                      taps=True, min_score=config.min_score, progress=progress, desc=f"detect ({version})",
                      load_batch=admission, load_size=max(ADMIT_AT_ONCE, config.batch_size))
    finally:
        report.quarantined.extend(admission.ingest.quarantined + admission.unloadable)
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
