"""Label errors: where the model and the labels disagree, and the labels are the likelier to be wrong.

Every disagreement is counted as a model error by `mining.model_errors`. Some are the annotators' mistakes instead,
and a mining query made from one sends the miner after objects the model already gets right. Per labelled image,
the model's confident predictions (score >= `min_score`) are matched to the labels of their class at IoU >=
`match.iou_threshold` by the one matcher (`mining.matching`, COCOeval's greedy rule), and then:

- `possible_bad_box`: a confident prediction matched to a label of its class below `bad_box_iou`, or overlapping
  an unmatched label of its class at `match.background_iou` <= IoU < `iou_threshold` — the box was drawn sloppily
  or shifted. Suspicion: score x how far the IoU falls below `bad_box_iou` (1 at IoU 0.5 and below).
- `possible_wrong_class`: a confident prediction on an unmatched label of another class (IoU >= iou_threshold)
  that no prediction of the label's class claims. Suspicion: score x agreement.
- `possible_missing`: a confident prediction that overlaps no label (IoU < iou_threshold with all of them, and
  not a sloppy box above) — an object nobody labelled, or a false positive. Suspicion: score x agreement.
- `possible_spurious`: a label no prediction of its class supports: the best score of a prediction of its class at
  IoU >= iou_threshold (any score the model kept) is `support`; suspicion (1 - support / `spurious_support`),
  halved as far as any prediction of any class roughly there (IoU >= background_iou) is confident: a model's miss
  usually leaves a trace, a box on nothing does not.

Agreement is what tells a missing label from a false positive of the model: the fraction of the prediction's
`neighbours` nearest labelled detections (box-head FC vectors, centred, cosine; other images only) that are matched
predictions of the same class. An unlabelled car looks like the labelled cars the model found; the model's false
positives on a logo or a balloon look like each other. (FiftyOne's mistakenness uses the score alone; cleanlab's
object-detection scores add a similarity term of the same spirit.) Without vectors the agreement is 1: the score
alone decides.

A model that trained on a label cannot judge it: it has learned the mistake. `find_label_errors` therefore only
judges images the model never trained on ("held_out"), and says how many it skipped. Where the labelled set is
the training set, k models each trained without one fold judge it ("k_fold", `jobs.label_folds`).

A weak model cannot judge either: it calls the labels of what it cannot see spurious. So the judge is measured on
errors planted in a copy of the labels (`mining.label_error_check`), and mining leaves nothing out on its word
below `min_precision` (`LabelErrorReport.judge_too_weak`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdb import FeatureDB
from fdb import images as image_store
from fdb import label_errors as suspect_store
from fdb import labels as label_store
from fdb import models as model_store
from mining.config import LabelErrorConfig, MatchConfig
from mining.label_agreement import agreements, box_vectors, neighbour_agreement, non_crowd
from mining.label_error_check import JudgeCheck, check_judge
from mining.matching import match_image, stored_detections
from records import LABEL_ERROR_TYPES, Detection, LabelSuspect, ModelError
from records.boxes import box_ious
from records.coco import CocoSet, load_coco
from records.hashing import file_sha256, json_key

__all__ = ["LABEL_ERROR_TYPES", "LabelErrorConfig", "LabelErrorReport", "explained_errors", "find_label_errors",
           "neighbour_agreement", "suspect_image_labels", "trained_on"]


def _key(det: Detection):
    return det.id if det.id is not None else det.rank


def suspect_image_labels(detections: list[Detection], ground_truth: list[dict],
                         config: LabelErrorConfig = LabelErrorConfig(), match: MatchConfig = MatchConfig(),
                         agreement: dict | None = None) -> list[LabelSuspect]:
    """The suspected label errors of one image, every candidate with its suspicion (the caller applies the
    threshold). `detections`: every detection the model kept (any score; the low ones give `support`);
    `ground_truth`: COCO annotations; `agreement`: detection id (or rank) -> neighbour agreement."""
    agreement = agreement or {}
    matching = match_image(detections, non_crowd(ground_truth), config.min_score, match.iou_threshold)
    dets, gts, iou, matched = matching.detections, matching.labels, matching.iou, matching.label_of
    claimed = set(matched.values())  # labels a confident prediction of their class matched
    suspects: list[LabelSuspect] = []
    accused: set[int] = set()  # labels already suspected through a prediction
    for i, det in enumerate(dets):
        found = _suspect_prediction(i, det, gts, iou, matched, claimed, agreement, config, match)
        if found is not None:
            suspect, label = found
            suspects.append(suspect)
            if label is not None:
                accused.add(label)
    suspects += _suspect_unsupported_labels(detections, gts, claimed, accused, config, match)
    return suspects


def _label_suspect(kind: str, suspicion: float, det: Detection | None, g: dict | None, overlap: float, why: str,
                   **extra) -> LabelSuspect:
    """A suspect of `kind`, with the prediction's and/or the label's evidence and the suspicion clipped to [0, 1]."""
    return LabelSuspect(
        kind, float(np.clip(suspicion, 0.0, 1.0)),
        int(det.category_id) if det is not None else int(g["category_id"]),
        detection_id=_key(det) if det is not None else None, score=float(det.score) if det else None,
        bbox=[float(v) for v in det.bbox] if det is not None else None,
        gt_id=g["id"] if g is not None else None, gt_bbox=[float(v) for v in g["bbox"]] if g else None,
        gt_category_id=int(g["category_id"]) if g is not None else None, iou=float(overlap), why=why, **extra)


def _disagreement(overlap: float, config: LabelErrorConfig, match: MatchConfig) -> float:
    """How far a box's IoU falls below `bad_box_iou`: 1 at `iou_threshold` and below."""
    return min(1.0, (config.bad_box_iou - overlap) / max(config.bad_box_iou - match.iou_threshold, 1e-6))


def _suspect_prediction(i: int, det: Detection, gts: list[dict], iou: np.ndarray, matched: dict[int, int],
                        claimed: set[int], agreement: dict, config: LabelErrorConfig,
                        match: MatchConfig) -> tuple[LabelSuspect, int | None] | None:
    """What confident prediction `i` accuses, if anything: (the suspect, the accused label's index or None)."""
    if i in matched:
        j = matched[i]
        if iou[i, j] < config.bad_box_iou:
            return _label_suspect(
                "possible_bad_box", det.score * _disagreement(iou[i, j], config, match), det, gts[j], iou[i, j],
                f"a {det.score:.2f} prediction of its class overlaps the box at IoU {iou[i, j]:.2f} only"), j
        return None
    row = iou[i] if len(gts) else np.zeros(0)
    same = [j for j, g in enumerate(gts) if g["category_id"] == det.category_id]
    other = [j for j, g in enumerate(gts) if g["category_id"] != det.category_id]
    if any(row[j] >= match.iou_threshold for j in same):
        return None  # a duplicate of a matched prediction: the model's error, not the label's
    wrong = [j for j in other if row[j] >= match.iou_threshold and j not in claimed]
    if wrong:
        j = max(wrong, key=lambda j: row[j])
        agree = agreement.get(_key(det), 1.0)
        return _label_suspect(
            "possible_wrong_class", det.score * agree, det, gts[j], row[j],
            f"a {det.score:.2f} prediction of another class sits on the label (IoU {row[j]:.2f}); "
            f"{agree:.0%} of its nearest labelled look-alikes are that class", agreement=agree), j
    if any(row[j] >= match.iou_threshold for j in other):
        return None  # another class, on a label its own class's prediction claims: the model's confusion
    sloppy = [j for j in same if j not in claimed and row[j] >= match.background_iou]
    if sloppy:
        j = max(sloppy, key=lambda j: row[j])
        return _label_suspect(
            "possible_bad_box", det.score * _disagreement(row[j], config, match), det, gts[j], row[j],
            f"a {det.score:.2f} prediction of its class overlaps the unmatched box at IoU {row[j]:.2f}"), j
    agree = agreement.get(_key(det), 1.0)
    best = float(row.max()) if len(row) else 0.0
    return _label_suspect(
        "possible_missing", det.score * agree, det, None, best,
        f"a {det.score:.2f} prediction overlaps no label (best IoU {best:.2f}); {agree:.0%} of its nearest "
        f"labelled look-alikes are matched objects of its class", agreement=agree), None


def _suspect_unsupported_labels(detections: list[Detection], gts: list[dict], claimed: set[int], accused: set[int],
                                config: LabelErrorConfig, match: MatchConfig) -> list[LabelSuspect]:
    """The `possible_spurious` suspects: labels neither matched nor accused that no prediction of their class
    supports (every kept detection counts, whatever its score)."""
    suspects = []
    every = sorted(detections, key=lambda d: -d.score)
    all_iou = box_ious([d.bbox for d in every], [g["bbox"] for g in gts])
    for j, g in enumerate(gts):
        if j in claimed or j in accused:
            continue
        support = max((d.score for i, d in enumerate(every) if d.category_id == g["category_id"]
                       and all_iou[i, j] >= match.iou_threshold), default=0.0)
        if support >= config.spurious_support:
            continue
        # Something the model saw there, of any class and roughly there, says an object is there: a miss of the
        # model rather than a box on nothing.
        presence = max((d.score for i, d in enumerate(every) if all_iou[i, j] >= match.background_iou),
                       default=0.0)
        suspects.append(_label_suspect(
            "possible_spurious", (1.0 - support / config.spurious_support) * (1.0 - 0.5 * presence), None, g,
            float(all_iou[:, j].max()) if len(every) else 0.0,
            f"no prediction of its class supports the label (best score {support:.2f}; anything there "
            f"{presence:.2f})", support=support))
    return suspects


# ---------------------------------------------------------------------------------------------------- recorded
@dataclass
class LabelErrorReport:
    model_version: str
    config: LabelErrorConfig
    predictions: str  # "held_out" or "k_fold"
    images: int  # images judged
    skipped_in_sample: int  # labelled images the model trained on: not judged
    suspects: list[LabelSuspect]  # every candidate, by suspicion (highest first)
    params_key: str = ""  # names this judgment's parameters and judges in fdb
    labels: int = 0  # non-crowd labels on the judged images
    check: JudgeCheck | None = None  # its precision and recall on errors planted in a copy of the labels

    @property
    def supports_too_few_labels(self) -> bool:
        """The model supports fewer than half the labels it judged: it is too weak to tell a wrong label from
        its own blindness (a model that barely detects calls every label spurious)."""
        spurious = sum(s.type == "possible_spurious" for s in self.label_errors)
        return self.labels > 0 and spurious > self.labels / 2

    @property
    def judge_too_weak(self) -> bool:
        """It supports too few labels, or its precision on planted label errors is not measured or under
        `config.min_precision` (`check.trusted`). Its suspects are kept for a look, but mining leaves nothing out on
        its word."""
        return self.supports_too_few_labels or (self.check is not None and not self.check.trusted)

    @property
    def label_errors(self) -> list[LabelSuspect]:
        """The suspects at or above the threshold: what counts as a label error."""
        return [s for s in self.suspects if s.suspicion >= self.config.threshold]

    def counts(self) -> dict[str, int]:
        found = Counter(s.type for s in self.label_errors)
        return {kind: found.get(kind, 0) for kind in LABEL_ERROR_TYPES}

    def table(self) -> str:
        counts = self.counts()
        lines = [f"suspected label errors (suspicion >= {self.config.threshold:g}, {self.predictions} predictions "
                 f"on {self.images} images" + (f"; {self.skipped_in_sample} the model trained on were not judged"
                                               if self.skipped_in_sample else "") + ")"]
        lines += [f"  {kind:<22}{counts[kind]:>6}" for kind in LABEL_ERROR_TYPES]
        lines += self.check.table_lines() if self.check is not None else []
        if self.supports_too_few_labels:
            lines.append(f"  the model supports fewer than half of the {self.labels} labels: too weak to judge them "
                         "(train it longer, or from pretrained weights); mining leaves nothing out on its word")
        return "\n".join(lines)


def trained_on(fdb: FeatureDB, model_version: str) -> tuple[set[str], set]:
    """(resolved image paths, fdb image ids) of every image the model or its ancestors trained on, as far as the
    registry records it: the COCO file of each training set and the labelled batches it took."""
    paths: set[str] = set()
    image_ids: set = set()
    version, seen = model_version, set()
    while version and version not in seen:
        seen.add(version)
        doc = model_store.get_model(fdb, version) or {}
        data = doc.get("training_data") or {}
        for key in ("train", "labelled_set"):
            path = data.get(key)
            if path and Path(path).is_file():
                with contextlib.suppress(Exception):  # an unreadable old file: it cannot be compared
                    coco = load_coco(path, image_dir=data.get("images") if isinstance(data.get("images"), str)
                                     else None)
                    paths.update(str(coco.image_path(i).resolve()) for i in coco.images)
        batches = data.get("batches") or []
        if batches:
            image_ids.update(label_store.images_of_batches(fdb, batches))
        version = doc.get("parent")
    return paths, image_ids


def find_label_errors(fdb: FeatureDB, model_version: str | list[str], ground_truth: CocoSet,
                      config: LabelErrorConfig = LabelErrorConfig(),
                      match: MatchConfig = MatchConfig()) -> LabelErrorReport:
    """Suspect the labels of `ground_truth` with the predictions stored in fdb, and record the suspects.

    Each image is judged by the first of the models `model_version` names that never trained on it (as the
    registry records their training data); an image every model trained on is skipped. One model judging a set
    it did not train on gives "held_out" predictions; k models each trained without one fold of the set
    (`jobs.label_folds`) give "k_fold" ones, every image judged by the model that did not see it."""
    versions = [model_version] if isinstance(model_version, str) else list(model_version)
    uri_of = {cid: str(ground_truth.image_path(cid).resolve()) for cid in ground_truth.images}
    docs = image_store.by_uri(fdb, uri_of.values())
    missing = [u for u in uri_of.values() if u not in docs]
    if missing:
        raise LookupError(f"{len(missing)} of {len(uri_of)} labelled images are not in fdb (e.g. {missing[0]}): "
                          "run detection over them first")
    judge_of = _judges(fdb, versions, uri_of, docs)
    predictions = "held_out" if len(versions) == 1 else "k_fold"
    judged = [cid for cid in uri_of if cid in judge_of]
    dets_of = _judged_detections(fdb, versions, judged, judge_of, uri_of, docs)
    # The detections' vectors do not depend on the labels: read once, for the labelled set and the planted copy.
    vectors = {v: box_vectors(fdb, v, [d for c in judged if judge_of[c] == v for d in dets_of[c]], config)
               for v in versions}

    def judge(labels: CocoSet) -> dict[int, list[LabelSuspect]]:
        return _judge_images(labels, dets_of, judge_of, vectors, config, match)

    suspects_of = judge(ground_truth)
    check = check_judge(ground_truth, judged, dets_of, suspects_of, judge, config)
    names = {c["id"]: c["name"] for c in ground_truth.categories}
    labels_sha = file_sha256(ground_truth.path)
    # min_precision decides what mining does with the suspects, not what they are: it does not name them.
    judging = {k: v for k, v in config.as_dict().items() if k != "min_precision"}
    params_key = json_key([judging, match.as_dict(), sorted(versions)], 16)
    found = []
    for cid in judged:
        found += _stamped(suspects_of[cid], docs[uri_of[cid]]["_id"], uri_of[cid], cid, judge_of[cid], names,
                          params_key, predictions, labels_sha)
    found.sort(key=lambda s: (-s.suspicion, str(s.id)))
    suspect_store.record_suspects(fdb, found, threshold=config.threshold)
    labels = sum(len(non_crowd(ground_truth.annotations_by_image[c])) for c in judged)
    return LabelErrorReport(" + ".join(versions), config, predictions, len(judged), len(uri_of) - len(judged),
                            found, params_key, labels, check)


def _judge_images(labels: CocoSet, dets_of: dict[int, list[Detection]], judge_of: dict[int, str], vectors: dict,
                  config: LabelErrorConfig, match: MatchConfig) -> dict[int, list[LabelSuspect]]:
    """COCO image id -> the suspects of every judged image of `labels` (the labelled set, or its planted copy)."""
    # Vectors of different models live in different spaces: each model's detections are compared among
    # themselves.
    agreement: dict = {}
    for version, version_vectors in vectors.items():
        agreement.update(agreements(version_vectors, labels, {c: d for c, d in dets_of.items()
                                                              if judge_of[c] == version}, config, match))
    return {cid: suspect_image_labels(dets, labels.annotations_by_image[cid], config, match, agreement)
            for cid, dets in dets_of.items()}


def _judges(fdb: FeatureDB, versions: list[str], uri_of: dict[int, str], docs: dict) -> dict[int, str]:
    """COCO image id -> the first of `versions` that never trained on the image (images every model trained on
    are left out)."""
    judge_of: dict[int, str] = {}
    for version in versions:
        paths, ids = trained_on(fdb, version)
        for cid, uri in uri_of.items():
            if cid not in judge_of and uri not in paths and docs[uri]["_id"] not in ids:
                judge_of[cid] = version
    return judge_of


def _judged_detections(fdb: FeatureDB, versions: list[str], judged: list[int], judge_of: dict[int, str],
                       uri_of: dict[int, str], docs: dict) -> dict[int, list[Detection]]:
    """COCO image id -> its judge's stored detections (no masks), for every judged image; an image its judge has
    not processed is refused."""
    dets_of: dict[int, list[Detection]] = {}
    for version in versions:
        mine = [c for c in judged if judge_of[c] == version]
        if mine:
            dets_of.update(stored_detections(fdb, version, {c: uri_of[c] for c in mine}, docs))
    return dets_of


def _stamped(suspects: list[LabelSuspect], image_id, uri: str, cid: int, version: str, names: dict,
             params_key: str, predictions: str, labels_sha: str) -> list[LabelSuspect]:
    """One image's suspects with where they were found filled in: their id in fdb, the image, the class names and
    the judgment (model, parameters, predictions, labels) that found them."""
    for s in suspects:
        subject = s.detection_id if s.detection_id is not None else f"gt{s.gt_id}"
        s.id = suspect_store.suspect_id(version, params_key, labels_sha, image_id, s.type, subject)
        s.image_id, s.uri, s.coco_image_id = image_id, uri, cid
        s.category_name, s.gt_category_name = names.get(s.category_id), names.get(s.gt_category_id)
        s.model_version, s.params_key, s.predictions, s.labels_sha256 = (version, params_key, predictions,
                                                                         labels_sha)
    return suspects


def explained_errors(errors: list[ModelError], suspects: list[LabelSuspect], threshold: float) -> dict:
    """Error id -> the suspect type that explains it: a false positive on a prediction a label error accuses, a
    miss of a label suspected itself. Those errors are the labels' mistakes, not the model's."""
    by_detection, by_label = {}, {}
    for s in suspects:
        if s.suspicion < threshold:
            continue
        if s.detection_id is not None:
            by_detection.setdefault((str(s.image_id), str(s.detection_id)), s.type)
        if s.gt_id is not None:
            by_label.setdefault((str(s.image_id), s.gt_id), s.type)
    explained = {}
    for e in errors:
        kind = (by_detection.get((str(e.image_id), str(e.detection_id))) if e.detection_id is not None
                else by_label.get((str(e.image_id), e.gt_id)))
        if kind:
            explained[e.id] = kind
    return explained

