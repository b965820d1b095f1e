"""Detectors: feature taps, checkpoints, evaluation, synthetic data, training, inference into fdb."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.checkpoint import load_checkpoint, save_checkpoint
from detectors.coco import CocoDetection, load_coco, load_image
from detectors.config import DetectConfig, TrainConfig
from detectors.early_stopping import BestOnHoldout, holdout_ids
from detectors.evaluate import evaluate_predictions
from detectors.model import build_model, preset_config
from detectors.synthetic import DISTRICT_DISTRACTOR_RATE, generate, render_scene
from detectors.taps import BOX_LAYER, IMAGE_LAYER, box_vectors, detect_with_features
from detectors.train import train_model
from storage import list_images
from jobs.detect import detect_images

CLASSES = ["stop_sign", "speed_sign", "car", "bus"]


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = preset_config("small", CLASSES, min_size=96, max_size=128, box_score_thresh=0.0, **overrides)
    return build_model(cfg).eval(), cfg


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, n_train=8, n_val=4, n_pool=6, seed=3, width=128, height=96, progress=False)
    return out


def test_taps_match_plain_inference_and_reproduce_scores():
    model, _ = tiny_model()
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 100)]
    plain = model(images)
    tapped = detect_with_features(model, images)
    for ref, out in zip(plain, tapped):
        assert len(out.boxes) > 0
        assert torch.equal(ref["boxes"], out.boxes) and torch.equal(ref["scores"], out.scores)
        assert torch.equal(ref["labels"], out.labels) and torch.equal(ref["masks"], out.masks)
        assert out.box_features.shape == (len(out.boxes), 1024)
        with torch.no_grad():
            logits, _ = model.roi_heads.box_predictor(out.box_features.clone())
        rescored = torch.softmax(logits, -1)[torch.arange(len(out.labels)), out.labels]
        assert (rescored - out.scores).abs().max().item() < 1e-5
        # Each detection's vector is its own proposal's: different proposals give different vectors.
        distinct = len(set(out.proposal_index.tolist()))
        assert len({tuple(v[:8].tolist()) for v in out.box_features}) == distinct


def test_image_vector_ignores_batch_padding():
    model, _ = tiny_model()
    small = torch.rand(3, 64, 96)
    alone = detect_with_features(model, [small])[0].image_feature
    batched = detect_with_features(model, [small, torch.rand(3, 96, 128)])[0].image_feature
    assert alone.shape == (4 * 128,)
    assert torch.allclose(alone, batched, atol=1e-4), (alone - batched).abs().max()


def test_checkpoint_round_trip(tmp_path):
    model, cfg = tiny_model()
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, "v1", "abc", metrics={"val": {"bbox": {"mAP": 0.5}}})
    loaded = load_checkpoint(path)
    assert (loaded.version, loaded.class_names, loaded.metrics["val"]["bbox"]["mAP"]) == ("v1", CLASSES, 0.5)
    image = [torch.rand(3, 96, 128)]
    a, b = model(image)[0], loaded.model(image)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    # Only plain data inside: it loads with weights_only=True (load_checkpoint does), and a foreign file is refused.
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a gaze-data-engine checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_synthetic_is_deterministic_and_distractors_cluster():
    a, objects_a, _, _ = render_scene(7, "pool", 3)
    b, objects_b, _, _ = render_scene(7, "pool", 3)
    assert a.tobytes() == b.tobytes() and len(objects_a) == len(objects_b)
    assert render_scene(8, "pool", 3)[0].tobytes() != a.tobytes()
    by_district = {}
    for i in range(300):
        _, objects, distractors, district = render_scene(0, "pool", i, 128, 96)
        by_district.setdefault(district, []).append(bool(distractors))
        assert all(o.mask.any() for o in objects)
    market = np.mean(by_district[4] + by_district[5])
    elsewhere = np.mean(sum((by_district[d] for d in range(4)), []))
    assert max(DISTRICT_DISTRACTOR_RATE[:4]) < 0.1 and market > 0.5 > 0.15 > elsewhere


def test_synthetic_hard_share_makes_a_tail_and_the_test_split_draws_its_tail_apart(tmp_path):
    paths = generate(tmp_path, 4, 40, 400, seed=0, width=128, height=96, progress=False, n_test=30, hard_share=0.05,
                     n_test_tail=12, train_districts=(0, 1, 2, 3))
    split = {name: json.loads(Path(path).read_text())["images"] for name, path in paths.items()}
    hard_pool = [bool(im["distractors"]) for im in split["pool"]]
    # About 5 % (20 of 400, binomial sd 4.4), not the districts' 29 %; a scene without look-alikes has none at all.
    assert 8 <= sum(hard_pool) <= 32
    assert all(im["district"] in (4, 5) for im, hard in zip(split["pool"], hard_pool) if hard)
    assert all(im["district"] in (0, 1, 2, 3) for im in split["train"])  # train keeps to its districts
    test = split["test"]
    tail = [im for im in test if im["file_name"].startswith("test_tail_")]
    assert len(test) == 30 and len(tail) == 12 and all(im["district"] in (4, 5) for im in tail)
    assert sum(bool(im["distractors"]) for im in tail) >= 10  # a look-alike can be hidden behind a vehicle
    assert len({im["file_name"] for im in test}) == 30
    # Deterministic, and a share of None leaves the default world exactly as it was.
    again = generate(tmp_path / "again", 4, 40, 400, seed=0, width=128, height=96, progress=False, n_test=30,
                     hard_share=0.05, n_test_tail=12, train_districts=(0, 1, 2, 3))
    assert json.loads(Path(again["pool"]).read_text())["images"] == split["pool"]
    plain = generate(tmp_path / "plain", 0, 0, 50, seed=0, width=128, height=96, progress=False)
    assert [im["district"] for im in json.loads(Path(plain["pool"]).read_text())["images"]] == [
        render_scene(0, "pool", i, 128, 96)[3] for i in range(50)]
    with pytest.raises(ValueError, match="between 0 and 1"):
        generate(tmp_path / "bad", 1, 1, 1, progress=False, hard_share=1.5)


def test_synthetic_coco_output_loads(synthetic):
    train = load_coco(synthetic / "annotations" / "train.json", image_dir=synthetic / "images")
    assert train.class_names == CLASSES and train.has_masks and len(train) == 8
    image, target = CocoDetection(train)[0]
    assert image.shape == (3, 96, 128) and target["masks"].shape[1:] == (96, 128)
    meta = json.loads((synthetic / "annotations" / "pool.json").read_text())["images"][0]
    assert "district" in meta and "distractors" in meta


def test_evaluation_scores_ground_truth_as_perfect_and_subsets(synthetic):
    val = load_coco(synthetic / "annotations" / "val.json", image_dir=synthetic / "images")
    data = json.loads((synthetic / "annotations" / "val.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
                "segmentation": a["segmentation"]} for a in data["annotations"]]
    metrics = evaluate_predictions(val, perfect)
    assert metrics["bbox"]["mAP"] == pytest.approx(1.0) and metrics["segm"]["mAP"] == pytest.approx(1.0)
    assert "Average Precision" in metrics["bbox"]["table"]
    shifted = [{**p, "bbox": [p["bbox"][0] + p["bbox"][2] * 0.6, *p["bbox"][1:]]} for p in perfect]
    assert evaluate_predictions(val, shifted, iou_types=("bbox",))["bbox"]["mAP"] < 0.2
    # Wrong boxes on one image only: the other images' subset stays perfect.
    first = data["images"][0]["id"]
    mixed = [s if s["image_id"] == first else p for p, s in zip(perfect, shifted)]
    others = [im["id"] for im in data["images"] if im["id"] != first]
    assert evaluate_predictions(val, mixed, image_ids=others, iou_types=("bbox",))["bbox"]["mAP"] == pytest.approx(1.0)
    curve = metrics["bbox"]["pr_curves"]["car"]
    assert len(curve["recall"]) == len(curve["precision_iou50"]) == 101


def test_training_reduces_the_loss(synthetic):
    train = load_coco(synthetic / "annotations" / "train.json", image_dir=synthetic / "images")
    model, _ = tiny_model()
    result = train_model(model, CocoDetection(train, train=True),
                         TrainConfig(steps=24, batch_size=2, warmup_steps=4, lr=2e-3), progress=False)
    assert result.steps == 24 and not model.training
    assert np.mean(result.losses[-6:]) < 0.7 * np.mean(result.losses[:3])


def test_a_frozen_backbone_stays_as_it_was_and_sgd_trains_the_rest(synthetic):
    from detectors.model import frozen

    train = load_coco(synthetic / "annotations" / "train.json", image_dir=synthetic / "images")
    model, _ = tiny_model()
    body = {k: v.clone() for k, v in model.backbone.body.state_dict().items()}
    heads = {k: v.clone() for k, v in model.roi_heads.state_dict().items()}
    with frozen(model, "backbone"):
        train_model(model, CocoDetection(train, train=True),
                    TrainConfig(steps=3, batch_size=2, warmup_steps=1, lr=1e-2, optimizer="sgd"), progress=False)
    assert all(torch.equal(v, model.backbone.body.state_dict()[k]) for k, v in body.items())
    assert any(not torch.equal(v, model.roi_heads.state_dict()[k]) for k, v in heads.items())
    assert all(p.requires_grad for p in model.backbone.body.parameters())  # as it was before
    with pytest.raises(ValueError, match="cannot freeze 'fpn'"):
        with frozen(model, "fpn"):
            pass
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        train_model(model, CocoDetection(train, train=True), TrainConfig(steps=1, batch_size=2, optimizer="lion"),
                    progress=False)


def test_detect_writes_detections_and_features_incrementally(fdb, synthetic, tmp_path, monkeypatch):
    model, cfg = tiny_model()
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, cfg, "tiny-v1", "h"))
    folder = tmp_path / "imagery"
    folder.mkdir()
    for name in ("pool_00000.png", "pool_00001.png", "pool_00002.png", "pool_00003.png", "pool_00004.png"):
        (folder / name).write_bytes((synthetic / "images" / name).read_bytes())
    (folder / "corrupt.png").write_bytes((synthetic / "images" / "pool_00005.png").read_bytes()[:300])
    uris = list_images(folder)

    # A crash after the first batch: what was written stays, and the next run finishes the rest exactly once.
    import detectors.inference as inference

    real = inference.detect_with_features
    calls = {"n": 0}

    def crash_on_second_batch(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(*args)

    monkeypatch.setattr(inference, "detect_with_features", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        detect_images(fdb, checkpoint, uris, DetectConfig(batch_size=2, commit_every=2, min_score=0.0),
                      progress=False)
    assert fdb.images.count_documents({"processed_by": "tiny-v1"}) == 2
    monkeypatch.setattr(inference, "detect_with_features", real)

    report = detect_images(fdb, checkpoint, uris, DetectConfig(batch_size=2, min_score=0.0), progress=False)
    assert report.images_processed == 3 and report.images_skipped == 2
    assert fdb.images.count_documents({"processed_by": "tiny-v1"}) == 5
    quarantined = fdb.images.find_one({"uri": str((folder / "corrupt.png").resolve())})
    assert quarantined["status"] == "quarantined" and "truncated" in quarantined["reason"]

    n_det = fdb.detections.count_documents({"model_version": "tiny-v1"})
    assert n_det > 0
    boxes = fdb.read_vectors("tiny-v1", BOX_LAYER)
    images = fdb.read_vectors("tiny-v1", IMAGE_LAYER)
    assert boxes.vectors.shape == (n_det, 1024) and images.vectors.shape == (5, 512)
    assert set(boxes.object_ids()) == {d["_id"] for d in fdb.detections.find({}, {"_id": 1})}
    det = fdb.detections.find_one({"rank": 0})
    assert set(det) >= {"box", "score", "category_id", "category_name", "mask"}

    # The tapped vector of a stored detection reproduces its stored score.
    one = fdb.read_vectors("tiny-v1", BOX_LAYER, owner_ids=[det["_id"]])
    with torch.no_grad():
        logits, _ = model.roi_heads.box_predictor(torch.from_numpy(one.vectors))
    assert torch.softmax(logits, -1)[0, det["label"]].item() == pytest.approx(det["score"], abs=1e-5)

    again = detect_images(fdb, checkpoint, uris, DetectConfig(batch_size=2, min_score=0.0), progress=False)
    assert (again.images_processed, again.detections, again.features) == (0, 0, 0)
    assert fdb.detections.count_documents({}) == n_det and fdb.features.count_documents({}) == n_det + 5


def _imagery(synthetic, folder, n):
    folder.mkdir()
    for i in range(n):
        name = f"pool_{i:05d}.png"
        (folder / name).write_bytes((synthetic / "images" / name).read_bytes())
    return list_images(folder)


def test_detect_reads_and_decodes_each_image_once(fdb, synthetic, tmp_path, monkeypatch):
    """Ingest (hash, size, duplicate check) and inference share one read and one decode of each new image."""
    import PIL.Image

    import fdb.image_files as image_module

    model, cfg = tiny_model()
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, cfg, "tiny-v1", "h"))
    uris = _imagery(synthetic, tmp_path / "imagery", 5)
    opened, reads = [], []
    real_open, real_read = PIL.Image.open, image_module.read_uri

    def counting_open(fp, *args, **kwargs):
        opened.append(fp)
        return real_open(fp, *args, **kwargs)

    def counting_read(uri):
        reads.append(uri)
        return real_read(uri)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    monkeypatch.setattr(image_module, "read_uri", counting_read)
    report = detect_images(fdb, checkpoint, uris, DetectConfig(batch_size=2, min_score=0.0), progress=False)
    assert report.images_processed == 5
    assert len(opened) == 5 and sorted(reads) == sorted(uris)


def test_the_prefetch_thread_changes_no_output_and_is_off_on_a_cpu(synthetic, tmp_path, monkeypatch):
    """Reading the next batch in a thread (the default on a GPU) gives what the inline read gives, an unreadable
    image included; on a CPU the inline read is the default (the thread made a 2-core pass slower)."""
    import detectors.inference as inference
    from detectors.inference import Labels, run_inference

    class Collect:
        def reset(self):
            self.out = []

        def process(self, keys, outputs):
            self.out += [(k, [(d.bbox, round(d.score, 5)) for d in o.detections], o.image_feature.tolist()) for k, o in
                         zip(keys, outputs)]

        def evaluate(self):
            return self.out

    model, cfg = tiny_model()
    uris = _imagery(synthetic, tmp_path / "imagery", 5)
    Path(uris[2]).write_bytes(b"not a png")
    inputs = [(u, u) for u in uris]
    threads = []
    real = inference.prefetched

    def spying(items, work, depth=2):
        threads.append(depth)
        return real(items, work, depth)

    monkeypatch.setattr(inference, "prefetched", spying)
    runs = {}
    for prefetch in (None, True, False):
        unreadable = []
        (runs[prefetch],) = run_inference(model, Labels(CLASSES), inputs, [Collect()], batch_size=2, taps=True,
                                          on_unreadable=lambda key, exc: unreadable.append(key), progress=False,
                                          prefetch=prefetch)
        assert unreadable == [uris[2]] and [k for k, *_ in runs[prefetch]] == uris[:2] + uris[3:]
    assert runs[True] == runs[False] == runs[None]
    assert len(threads) == 1  # only prefetch=True started the thread: the model is on the CPU

    # Loading 4 at a time (fewer, larger ingest writes) while the model still runs 2 at a time: the same outputs.
    batches, forward = [], inference._forward

    def counting(model, images, *args):
        batches.append(len(images))
        return forward(model, images, *args)

    monkeypatch.setattr(inference, "_forward", counting)
    unreadable = []
    (blocks,) = run_inference(model, Labels(CLASSES), inputs, [Collect()], batch_size=2, taps=True, load_size=4,
                              on_unreadable=lambda key, exc: unreadable.append(key), progress=False)
    assert blocks == runs[False] and unreadable == [uris[2]] and batches == [2, 2]


def test_a_quarantined_image_is_read_again_and_comes_back_once_repaired(fdb, synthetic, tmp_path):
    from fdb import images as image_store

    model, cfg = tiny_model()
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, cfg, "tiny-v1", "h"))
    uris = _imagery(synthetic, tmp_path / "imagery", 3)
    good = [Path(u).read_bytes() for u in uris]
    Path(uris[0]).write_bytes(good[0][:300])  # truncated
    config = DetectConfig(batch_size=2, min_score=0.0)
    first = detect_images(fdb, checkpoint, uris, config, progress=False)
    assert first.images_processed == 2 and [u for u, _ in first.quarantined] == [uris[0]]
    # A processed image quarantined later (its file went bad, then was restored) is read again but not redone.
    done = fdb.images.find_one({"uri": uris[1]})
    image_store.quarantine(fdb, done["_id"], "unreadable for a while")
    Path(uris[0]).write_bytes(good[0])
    again = detect_images(fdb, checkpoint, uris, config, progress=False)
    assert (again.images_processed, again.images_skipped, again.quarantined) == (1, 2, [])
    assert [d["status"] for d in fdb.images.find({}).sort("uri", 1)] == ["ok", "ok", "ok"]
    assert fdb.images.count_documents({"processed_by": "tiny-v1"}) == 3


# kill point -> images whose work is complete when the run dies (batch_size 2, a commit point every 4 images)
KILLS = {"in the 2nd forward pass": ("forward", 2, 0), "in the 3rd forward pass": ("forward", 3, 4),
         "in the 1st commit, before its mark": ("mark", 1, 0), "in the 2nd commit, before its mark": ("mark", 2, 4),
         "after the 1st commit's mark": ("after_mark", 1, 4)}


@pytest.mark.parametrize("kill", list(KILLS))
def test_a_run_killed_at_any_commit_boundary_leaves_nothing_half_written_and_resumes_once(
        fdb, synthetic, tmp_path, monkeypatch, kill):
    import detectors.inference as inference
    import fdb.images as image_module

    model, cfg = tiny_model()
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, cfg, "tiny-v1", "h"))
    uris = _imagery(synthetic, tmp_path / "imagery", 6)
    config = DetectConfig(batch_size=2, commit_every=4, min_score=0.0)
    where, nth, complete = KILLS[kill]
    calls = {"n": 0}
    target = (inference, "detect_with_features") if where == "forward" else (image_module, "mark_processed")
    real = getattr(*target)

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth and where != "after_mark":
            raise RuntimeError("killed")
        out = real(*args, **kwargs)
        if calls["n"] == nth:
            raise RuntimeError("killed")
        return out

    monkeypatch.setattr(*target, dies)
    with pytest.raises(RuntimeError, match="killed"):
        detect_images(fdb, checkpoint, uris, config, progress=False)
    monkeypatch.setattr(*target, real)

    # Nothing half-written: every image marked done has its image vector and each of its detections' vectors.
    done = [d["_id"] for d in fdb.images.find({"processed_by": "tiny-v1"})]
    assert len(done) == complete
    if done:
        dets = [d["_id"] for d in fdb.detections.find({"image_id": {"$in": done}})]
        assert set(fdb.vectors_by_owner("tiny-v1", IMAGE_LAYER, done)) == set(done)
        assert set(fdb.vectors_by_owner("tiny-v1", BOX_LAYER, dets)) == set(dets)

    report = detect_images(fdb, checkpoint, uris, config, progress=False)
    assert (report.images_processed, report.images_skipped) == (6 - complete, complete)
    n_det = fdb.detections.count_documents({"model_version": "tiny-v1"})
    assert fdb.images.count_documents({"processed_by": "tiny-v1"}) == 6 == fdb.images.count_documents({})
    assert fdb.features.count_documents({}) == n_det + 6  # each detection and image once, whatever was redone


def test_ground_truth_boxes_are_tapped_once_and_a_miss_searches_with_its_box(fdb, synthetic, tmp_path):
    from mining.queries import build_queries
    from records import GT_BOX_LAYER, ModelError
    from records.coco import load_coco
    from jobs.detect import tap_ground_truth

    model, cfg = tiny_model()
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, cfg, "tiny-v1", "h"))
    val = load_coco(synthetic / "annotations" / "val.json", image_dir=synthetic / "images")
    uris = [str(val.image_path(i).resolve()) for i in val.images]
    detect_images(fdb, checkpoint, uris, DetectConfig(min_score=0.0), split="val", labelled=True, progress=False)
    boxes = sum(len(v) for v in val.annotations_by_image.values())
    assert tap_ground_truth(fdb, checkpoint, val) == boxes > 0
    assert tap_ground_truth(fdb, checkpoint, val) == 0  # already tapped: nothing written twice
    tapped = fdb.read_vectors("tiny-v1", GT_BOX_LAYER)
    assert tapped.vectors.shape == (boxes, 1024) and np.isfinite(tapped.vectors).all()
    # Pooled from the model's features: the same box gives the same vector, another box another one.
    image = load_image(val.image_path(min(val.images)))
    same = box_vectors(model.eval(), image, torch.tensor([[10.0, 10.0, 60.0, 50.0]] * 2 + [[0.0, 0.0, 30.0, 20.0]]))
    assert torch.equal(same[0], same[1]) and not torch.allclose(same[0], same[2])

    cid = next(i for i in val.images if val.annotations_by_image[i])
    ann = val.annotations_by_image[cid][0]
    image_id = fdb.images.find_one({"uri": str(val.image_path(cid).resolve())})["_id"]
    miss = ModelError("miss", ann["category_id"], ann["bbox"], gt_id=ann["id"], id="e1", image_id=image_id,
                      category_name="car")
    [query] = build_queries(fdb, "tiny-v1", [miss])
    expected = fdb.vectors_by_owner("tiny-v1", GT_BOX_LAYER, [fdb.ground_truth_id(image_id, ann["id"])])
    assert query.level == "detection" and np.array_equal(query.vector, next(iter(expected.values())))
    # Where the box was not tapped, the miss falls back to its image's vector.
    untapped = ModelError("miss", ann["category_id"], ann["bbox"], gt_id=10_000, id="e2", image_id=image_id)
    assert build_queries(fdb, "tiny-v1", [untapped])[0].level == "image"


def test_detect_can_store_float16_vectors(fdb, synthetic, tmp_path):
    model, cfg = tiny_model()
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, cfg, "tiny-v1", "h"))
    uris = [str(synthetic / "images" / name) for name in ("pool_00000.png", "pool_00001.png")]
    config = DetectConfig(batch_size=2, min_score=0.0, feature_dtype="float16")
    report = detect_images(fdb, checkpoint, uris, config, progress=False)
    assert report.features > 2 and fdb.layer_shape("tiny-v1", BOX_LAYER) == (1024, "float16")
    stored = fdb.read_vectors("tiny-v1", IMAGE_LAYER)
    assert stored.vectors.dtype == np.float16 and stored.vectors.shape == (2, 512)


def test_hard_negative_sampler_picks_the_top_scoring_background_and_restores_the_model(synthetic):
    from torchvision.ops import box_iou

    from detectors import hard_negatives
    from detectors.coco import collate_fn

    train = load_coco(synthetic / "annotations" / "train.json", image_dir=synthetic / "images")
    images, targets = collate_fn([CocoDetection(train, train=True)[i] for i in range(2)])
    model, _ = tiny_model()
    original = model.roi_heads.fg_bg_sampler
    handle = hard_negatives.enable(model, hard_fraction=0.5, candidates=64)
    model.train()
    torch.manual_seed(0)
    losses = model(list(images), list(targets))
    assert all(torch.isfinite(v) for v in losses.values())
    sampler = model.roi_heads.fg_bg_sampler
    step = sampler.step
    for i, hard in enumerate(sampler.last_hard):
        quota = sampler.batch_size_per_image - min(int(sampler.batch_size_per_image * sampler.positive_fraction),
                                                   int((box_iou(step.proposals[i], step.targets[i]["boxes"]).max(1).values >= 0.5).sum()))
        assert hard.numel() == int(quota * 0.5) > 0
        gt = step.targets[i]["boxes"]
        ious = box_iou(step.proposals[i][hard], gt).max(dim=1).values
        assert (ious <= 0.1).all(), "hard negatives must be pure background"
        # They are the box head's highest-scoring background among the RPN's top candidates.
        bg = torch.where(box_iou(step.proposals[i], gt).max(dim=1).values <= 0.1)[0]
        candidates = bg[(bg < len(step.proposals[i]) - len(gt))][:64]
        with torch.no_grad():
            heads = model.roi_heads
            boxes = [step.proposals[i][candidates] if j == i else step.proposals[j][:0] for j in range(2)]
            pooled = heads.box_roi_pool(step.features, boxes, step.image_shapes)
            fg = 1 - heads.box_predictor(heads.box_head(pooled))[0].softmax(-1)[:, 0]
        chosen = torch.isin(candidates, hard)
        assert chosen.sum() == hard.numel()  # all from the candidates
        # (batched RoIAlign differs from this per-image call in the last float bits: compare with a tolerance)
        assert fg[chosen].min() >= fg[~chosen].max() - 1e-5
    handle.remove()
    assert model.roi_heads.fg_bg_sampler is original and "add_gt_proposals" not in vars(model.roi_heads)
    assert not model.roi_heads._forward_pre_hooks
    model(list(images), list(targets))  # trains as before


def test_a_mask_model_fine_tunes_on_boxes_without_touching_its_mask_branch(tmp_path):
    """Box-only labels (most street datasets) train a Mask R-CNN's backbone, RPN and box head; its mask branch,
    which nothing could train, is switched off for the run and comes back exactly as it was."""
    generate(tmp_path, n_train=4, n_val=0, n_pool=0, seed=4, width=128, height=96, progress=False, boxes_only=True)
    boxes = load_coco(tmp_path / "annotations" / "train.json")
    model, _ = tiny_model()
    mask_before = {k: v.clone() for k, v in model.roi_heads.mask_predictor.state_dict().items()}
    box_before = model.roi_heads.box_predictor.cls_score.weight.clone()
    result = train_model(model, CocoDetection(boxes, train=True), TrainConfig(steps=2, batch_size=2, warmup_steps=1),
                         progress=False)
    assert result.steps == 2 and model.roi_heads.has_mask()
    assert all(torch.equal(v, mask_before[k]) for k, v in model.roi_heads.mask_predictor.state_dict().items())
    assert not torch.equal(model.roi_heads.box_predictor.cls_score.weight, box_before)
    assert "masks" in model.eval()([torch.rand(3, 96, 128)])[0]  # still predicts masks


def test_holdout_ids_are_chosen_by_file_name_and_never_take_every_image(synthetic):
    train = load_coco(synthetic / "annotations" / "train.json")
    held = holdout_ids(train, 0.25)
    assert len(held) == 2 and held == holdout_ids(load_coco(synthetic / "annotations" / "train.json"), 0.25)
    assert set(held) < set(train.images)
    assert holdout_ids(train, 0.0) == [] and len(holdout_ids(train, 1.0)) == len(train.images) - 1
    names = sorted(im["file_name"] for im in train.images.values())
    among = holdout_ids(train, 0.5, among=set(names[:4]))
    assert len(among) == 2 and {train.images[i]["file_name"] for i in among} < set(names[:4])
    assert holdout_ids(train, 0.5, among=set(names[:1])) == []  # one new image: nothing to hold out and train on


class ScriptedHoldout(BestOnHoldout):
    """The real hook with its scores given, so the test knows which check is best; every checked state is kept."""

    def __init__(self, coco, ids, every, patience, values):
        super().__init__(coco, ids, every, patience)
        self.values, self.states = list(values), []

    def score(self, model):
        self.states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return self.values.pop(0)


def test_early_stopping_keeps_the_best_checks_weights_and_stops_after_patience(synthetic):
    train = load_coco(synthetic / "annotations" / "train.json")
    model, _ = tiny_model()
    hook = ScriptedHoldout(train, holdout_ids(train, 0.25), every=2, patience=2, values=[0.1, 0.3, 0.2, 0.25, 0.9])
    result = train_model(model, CocoDetection(train, train=True), TrainConfig(steps=20, warmup_steps=1, lr=1e-3),
                         progress=False, hooks=(hook,))
    # Checks at steps 0, 2, 4, 6: the best is step 2, and two checks without improvement stop the run at step 6.
    assert result.steps == 6 and result.stopped_early
    assert result.holdout["best_step"] == 2 and [s for s, _ in result.holdout["checks"]] == [0, 2, 4, 6]
    kept = model.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in hook.states[1].items())
    assert not all(torch.equal(kept[k], v) for k, v in hook.states[3].items())


def test_early_stopping_never_ends_worse_on_the_holdout_than_it_began(synthetic):
    train = load_coco(synthetic / "annotations" / "train.json")
    model, _ = tiny_model()
    ids = holdout_ids(train, 0.25)
    hook = BestOnHoldout(train, ids, every=3, patience=None)
    result = train_model(model, CocoDetection(train, [i for i in train.images if i not in ids], train=True),
                         TrainConfig(steps=7, warmup_steps=1, lr=1e-3), progress=False, hooks=(hook,))
    checks = hook.curve.checks
    assert [s for s, _ in checks] == [0, 3, 6, 7] == [s for s, _ in result.holdout["checks"]]  # the last step too
    assert hook.curve.best_map == max(m for _, m in checks) >= checks[0][1]
    assert hook.score(model) == pytest.approx(hook.curve.best_map)  # the kept weights are the best check's
