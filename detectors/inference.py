"""One inference pass over a set of images, feeding several consumers (detectron2's `inference_on_dataset` with
`DatasetEvaluators`): the store writer (`jobs.detect`), the COCO evaluator (`detectors.evaluate`), the error
typer (`mining.model_errors.ErrorCounter`) each see the same outputs, so the model runs once per image.

The model side writes nothing: images in, typed detections (`records.Detection`) and, with taps, their feature
vectors out. A consumer is any object with `reset()`, `process(keys, outputs)` and `evaluate()`. On a GPU, reading
and decoding the next batch overlaps the model's work on this one (`prefetched`).
"""

from __future__ import annotations

import io
import queue
import threading
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

import numpy as np
import torch
from pycocotools import mask as mask_utils
from tqdm import tqdm

from detectors.coco import load_image, to_tensor
from detectors.taps import detect_with_features
from records import Detection
from storage import read_uri, the_files_fault

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class ImageDetections:
    """One image's output of a pass: its detections, and with taps the FC vector of each and the image vector."""

    detections: list[Detection]
    box_features: np.ndarray | None = None  # (len(detections), 1024) float32
    image_feature: np.ndarray | None = None  # (1024,) float32


class Consumer(Protocol):
    def reset(self) -> None: ...

    def process(self, keys: list, outputs: list[ImageDetections]) -> None: ...

    def evaluate(self) -> Any: ...


@dataclass(frozen=True)
class Labels:
    """How the model's contiguous labels 1..K map to the dataset's categories."""

    class_names: list[str]
    category_ids: list[int] | None = None

    def category_id(self, label: int) -> int:
        return self.category_ids[label - 1] if self.category_ids else label

    def name(self, label: int) -> str:
        return self.class_names[label - 1]


def to_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None,
                  label_map: Labels, keep: list[int], proposal_index: torch.Tensor | None = None) -> list[Detection]:
    """Typed detections for the positions `keep` of a model output, ranked in that order; masks as COCO RLE."""
    rles = None
    if masks is not None and keep:
        binary = (masks[keep, 0] > 0.5).numpy().astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    out = []
    for rank, k in enumerate(keep):
        x0, y0, x1, y1 = boxes[k].tolist()
        label = int(labels[k])
        out.append(Detection(
            rank=rank, bbox=[x0, y0, x1 - x0, y1 - y0], score=float(scores[k]),
            category_id=label_map.category_id(label), category_name=label_map.name(label), label=label,
            proposal_index=int(proposal_index[k]) if proposal_index is not None else None,
            mask={"size": list(rles[rank]["size"]), "counts": rles[rank]["counts"].decode()} if rles is not None
            else None))
    return out


def _forward(model, images: list[torch.Tensor], label_map: Labels, taps: bool,
             min_score: float | None) -> list[ImageDetections]:
    if taps:
        results = []
        for out in detect_with_features(model, images):
            keep = (out.scores >= (min_score or 0.0)).nonzero().flatten().tolist()
            results.append(ImageDetections(
                to_detections(out.boxes, out.scores, out.labels, out.masks, label_map, keep, out.proposal_index),
                out.box_features[keep].numpy().astype(np.float32), out.image_feature.numpy().astype(np.float32)))
        return results
    with torch.inference_mode():
        outputs = model(images)
    results = []
    for out in outputs:
        scores = out["scores"]
        keep = list(range(len(scores))) if min_score is None else (scores >= min_score).nonzero().flatten().tolist()
        results.append(ImageDetections(to_detections(out["boxes"], scores, out["labels"], out.get("masks"),
                                                     label_map, keep)))
    return results


def run_inference(model, label_map: Labels, inputs: Sequence[tuple[Any, Any]], consumers: Sequence[Consumer],
                  batch_size: int = 4, taps: bool = False, min_score: float | None = None,
                  on_unreadable: Callable[[Any, Exception], None] | None = None, progress: bool = True,
                  desc: str = "detecting", load_batch: Callable[[list], list] | None = None,
                  prefetch: bool | None = None, load_size: int | None = None) -> list:
    """Run `model` once over `inputs` ((key, image) pairs; an image is a path, a uri, a file object or a decoded
    tensor) in batches, hand every batch's outputs to each consumer, and return each consumer's `evaluate()`.

    `taps` adds each detection's FC vector and the image vector (`detectors.taps`); `min_score` drops weaker
    detections (None keeps what the model keeps). An image that cannot be read goes to `on_unreadable` and the
    pass goes on; without it, the error is raised.

    With `prefetch` the next batch is read and decoded in a thread while the model runs on this one
    (`prefetched`), so `on_unreadable` is called from that thread. By default it is on when the model runs on a
    GPU, and off on a CPU: there the thread takes the GIL and a core from torch's own threads, and the pass got
    slower, not faster (120 images on 2 cores: 11.5 s with the thread, 9.5 s without). `load_batch` replaces the
    read (and `on_unreadable`): it takes a batch of (key, image) pairs and returns the (key, tensor or (H, W, 3)
    uint8 RGB array) pairs to run; `load_size` images at a time (default: `batch_size`), so a loader that records
    what it read (ingest) does it in fewer, larger writes while the model still runs `batch_size` at a time."""
    model.eval()
    for consumer in consumers:
        consumer.reset()
    bar = tqdm(total=len(inputs), desc=desc, unit="img", disable=not progress, leave=False)
    load_size = max(load_size or batch_size, 1)
    batches = [list(inputs[start:start + load_size]) for start in range(0, len(inputs), load_size)]
    load = load_batch or (lambda batch: load_images(batch, on_unreadable))

    def forward(loaded: list) -> None:
        keys = [key for key, _ in loaded]
        images = [image if isinstance(image, torch.Tensor) else to_tensor(image) for _, image in loaded]
        outputs = _forward(model, images, label_map, taps, min_score)
        for consumer in consumers:
            consumer.process(keys, outputs)

    # Images that could not be read (or that `load_batch` leaves out) leave no hole: the model always sees
    # `batch_size` images but at the end.
    ready: list = []
    if prefetch is None:
        prefetch = _on_gpu(model)
    loaded_batches = prefetched(batches, load) if prefetch else (load(batch) for batch in batches)
    with closing(loaded_batches):  # closed on an error too: the thread stops
        for loaded, batch in zip(loaded_batches, batches):
            ready.extend(loaded)
            while len(ready) >= batch_size:
                forward(ready[:batch_size])
                del ready[:batch_size]
            bar.update(len(batch))
    if ready:
        forward(ready)
    bar.close()
    return [consumer.evaluate() for consumer in consumers]


def _on_gpu(model) -> bool:
    params = getattr(model, "parameters", None)
    return params is not None and any(p.is_cuda for p in params())


def load_images(batch: list[tuple[Any, Any]], on_unreadable: Callable[[Any, Exception], None] | None = None
                ) -> list[tuple[Any, torch.Tensor]]:
    """(key, tensor) for each (key, image) of `batch` that can be read; the others go to `on_unreadable`."""
    loaded = []
    for key, source in batch:
        if isinstance(source, torch.Tensor):
            loaded.append((key, source))
            continue
        try:
            data = io.BytesIO(read_uri(source)) if isinstance(source, str) else source
        except OSError as exc:
            # The file's own problem is the caller's to record; a network error (S3) is raised, so the
            # caller's retry reads it again instead of quarantining a good image.
            if on_unreadable is None or not the_files_fault(source, exc):
                raise
            on_unreadable(key, exc)
            continue
        try:
            loaded.append((key, load_image(data)))
        except Exception as exc:  # noqa: BLE001 - any decode failure is the caller's to record
            if on_unreadable is None:
                raise
            on_unreadable(key, exc)
    return loaded


_DONE = object()


def prefetched(items: Iterable[T], work: Callable[[T], R], depth: int = 2) -> Iterator[R]:
    """`work(item)` for each item, in order, computed in a background thread while the consumer works: at most
    `depth` results wait in the queue, one more is being computed, so reading and decoding images overlaps the
    model. An exception in `work` is raised to the consumer
    at that item; a consumer that stops early (or raises) stops the thread after its current item."""
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> None:
        while not stop.is_set():
            try:
                return results.put(entry, timeout=0.1)
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                put((work(item), None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((None, exc))
        finally:
            put((_DONE, None))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value, error = results.get()
            if error is not None:
                raise error
            if value is _DONE:
                return
            yield value
    finally:
        stop.set()
        thread.join()
