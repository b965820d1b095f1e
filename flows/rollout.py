"""A new model reaches the archive: re-detect every stored image with it, then let it take over.

A model's features are its own, so a new production model would have to re-detect the whole archive on its first
night (40 hours at a million images and 7 images/s). The rollout does that work beforehand, while the old model
keeps serving the nights:

backfill (every readable image the new model has not processed, in chunks: Dask workers when the flow runs on a
cluster) -> carry the old model's listing marks -> backfill again (what nights ingested meanwhile) -> build the
new model's pool index -> hand production over (a compare-and-swap: refused if production changed meanwhile),
recorded in the registry's promotions.

Resumable: every chunk is the detect task (idempotent writes, a commit point every `DetectConfig.commit_every`
images), so a killed rollout is finished by the next run, which starts from what is still missing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from prefect import flow, get_run_logger, unmapped
from tqdm import tqdm

from dataengine.config import store_config
from detectors.config import DetectConfig
from flows.runners import build_task_runner, check_workers
from jobs.detect import DetectReport
from tasks.detect import archive_backlog, carry_listing_marks, detect
from tasks.index import reindex_pool
from tasks.models import resolve_model, take_over

# Passes over what nights ingested while the archive was backfilled; needing more means nights outpace the rollout.
MAX_CATCH_UPS = 3


@dataclass
class RolloutReport:
    model_version: str
    replaced: str | None  # the model that served until the hand-over
    detect: DetectReport
    seconds: float
    passes: list[int] = field(default_factory=list)  # images each pass found missing: the archive, then catch-ups
    marks_carried: int = 0
    index: dict = field(default_factory=dict)
    switch: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.detect.images_processed / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "detect": self.detect.as_doc(), "images_per_second": round(self.images_per_second, 2)}


@flow(name="rollout", task_runner=build_task_runner())
def rollout(model_version: str | None = None, checkpoint: str | None = None, detection: DetectConfig = DetectConfig(),
            chunk_size: int = 256, backend: str = "auto", progress: bool = True) -> RolloutReport:
    """Re-detect the archive with a registered `model_version` (or a `checkpoint` file, registered on the way), build
    its pool index, then make it the production model."""
    if not model_version and not checkpoint:
        raise ValueError("name the model to roll out: a registered version or a checkpoint file")
    logger = get_run_logger()
    check_workers()  # on a Dask cluster: every worker imports the project, or the run fails now
    store = store_config()
    # Registered, and its weights load: refused now, not in every chunk.
    model_version = resolve_model(store, model_version, checkpoint)
    serving = resolve_model(store)
    if serving == model_version:
        raise ValueError(f"{model_version} is already the production model: nothing to roll out")
    start = time.monotonic()
    report = RolloutReport(model_version, serving, DetectReport(model_version), 0.0)
    archive = archive_backlog(store, model_version)
    report.passes.append(len(archive))
    report.detect += backfill(store, model_version, archive, detection, chunk_size, progress)
    # The archive is done: the new model's nights may list from the old model's marks, and what nights ingested
    # while the rollout ran is caught up here.
    report.marks_carried = carry_listing_marks(store, serving, model_version)
    for _ in range(MAX_CATCH_UPS):
        backlog = archive_backlog(store, model_version)
        report.passes.append(len(backlog))
        if not backlog:
            break
        report.detect += backfill(store, model_version, backlog, detection, chunk_size, progress)
    else:
        report.passes.append(len(archive_backlog(store, model_version)))
    if report.passes[-1]:
        raise RuntimeError(f"nights kept adding images while the rollout caught up ({report.passes} per pass): "
                           f"run it again (it resumes), or with more Dask workers")
    report.seconds = round(time.monotonic() - start, 1)
    report.index = reindex_pool(store, model_version, backend)
    report.switch = take_over(store, model_version, serving, "rollout: the archive re-detected",
                              {"images": report.detect.images_processed, "seconds": report.seconds,
                               "passes": report.passes})
    logger.info("rollout of %s: %s; %.1f images/s; production %s -> %s", model_version, report.detect,
                report.images_per_second, serving, model_version)
    return report


def backfill(store, model_version: str, uris: list[str], detection: DetectConfig, chunk_size: int,
             progress: bool) -> DetectReport:
    """`uris` through the detect task in chunks (on Dask workers when the flow runs there), with a progress bar and
    a log line per chunk giving the rate and the time left."""
    logger = get_run_logger()
    chunks = [uris[i:i + chunk_size] for i in range(0, len(uris), chunk_size)]
    done = DetectReport(model_version)
    start = time.monotonic()
    with tqdm(total=len(uris), unit="img", desc=f"rollout {model_version}", disable=not progress) as bar:
        futures = detect.map(unmapped(store), unmapped(model_version), chunks, unmapped(detection),
                             source=unmapped("rollout"))
        for n, (chunk, future) in enumerate(zip(chunks, futures), start=1):
            done += future.result()
            bar.update(len(chunk))
            seen = sum(len(c) for c in chunks[:n])
            rate = seen / max(time.monotonic() - start, 1e-9)
            logger.info("rollout: %d/%d chunks, %d/%d images, %.1f images/s, about %.0f min left", n, len(chunks),
                        seen, len(uris), rate, (len(uris) - seen) / rate / 60)
    return done
